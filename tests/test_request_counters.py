"""Every counter the request path bumps, through real requests (memory and Redis backends),
and the Prometheus route of an app that serves them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from fastapi_cachemate import metrics
from fastapi_cachemate._kernels import kernels
from fastapi_cachemate.cache import cache_response
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.prometheus import metrics_route
from tests.support.apps import build_app, cache_lifespan, redis_lifespan, served
from tests.support.fixtures import AppFactory
from tests.support.servers import RedisServer

STATUS = "x-cache-status"


@pytest.fixture(autouse=True)
def zeroed() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def counts(endpoint: str) -> dict[str, int]:
    return metrics.snapshot()["endpoints"][endpoint]


def nonzero(endpoint: str) -> dict[str, int]:
    return {k: v for k, v in counts(endpoint).items() if v}


async def test_miss_stored_then_hits(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        first = await client.get("/async/1")
        assert first.headers[STATUS] == "MISS"
        for _ in range(3):
            assert (await client.get("/async/1")).headers[STATUS] == "HIT"
        assert (await client.get("/async/2")).headers[STATUS] == "MISS"
    row = nonzero("/async/{item_id}")
    assert row.pop("bytes_before_compression") == 2 * len(first.content)
    after = row.pop("bytes_after_compression")
    assert after > 2 * len(first.content)  # small bodies: entries carry headers and metadata
    assert row == {"hits": 3, "misses": 2, "stored": 2}
    totals = metrics.snapshot()["totals"]
    assert totals["hits"] == 3
    assert metrics.hit_ratio(totals) == 0.6


async def test_compressed_bytes(app_factory: AppFactory) -> None:
    app = app_factory(compression_mode="all")
    async with served(app) as client:
        compressed = CacheSetup.backend().compress_entries  # the in-process store: raw
        body = (await client.get("/big")).content  # 50 000 x: compresses very well
        assert (await client.get("/big")).headers[STATUS] == "HIT"
    row = counts("/big")
    assert row["bytes_before_compression"] == len(body) == 50_000
    if compressed:
        assert 0 < row["bytes_after_compression"] < 1_000
    else:
        assert row["bytes_after_compression"] > 50_000  # body + headers and metadata
    assert (row["stored"], row["hits"], row["misses"]) == (1, 1, 1)


async def test_bypass_and_no_cache(app_factory: AppFactory) -> None:
    app = app_factory(bypass_value="yes")
    async with served(app) as client:
        header = CacheSetup.settings().bypass_header
        bypassed = await client.get("/async/1", headers={header: "yes"})
        assert bypassed.headers[STATUS] == "BYPASS"
        assert (await client.get("/maybe-bypass", params={"x_user": "u"})).headers[
            STATUS
        ] == "BYPASS"
        skipped = await client.get("/async/1", headers={"cache-control": "no-cache"})
        assert skipped.headers[STATUS] == "NO_CACHE"
        assert (await client.post("/post")).headers[STATUS] == "NO_CACHE"
    assert nonzero("/async/{item_id}") == {"bypass": 1, "no_cache": 1}
    assert nonzero("/maybe-bypass") == {"bypass": 1}
    assert nonzero("/post") == {"no_cache": 1}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/missing", "status"),
        ("/error-json", "status"),
        ("/cookie", "set_cookie"),
        ("/private", "private"),
        ("/stream", "streaming"),
        ("/file", "streaming"),
    ],
)
async def test_not_stored_reasons(app_factory: AppFactory, path: str, reason: str) -> None:
    app = app_factory()
    async with served(app) as client:
        for _ in range(2):
            # /missing raises HTTPException(404): FastAPI answers, without X-Cache-Status
            assert (await client.get(path)).headers.get(STATUS) in {"MISS", "NO_CACHE", None}
    assert nonzero(path) == {"misses": 2, "not_stored": 2, f"not_stored_{reason}": 2}


async def test_not_stored_too_large(app_factory: AppFactory) -> None:
    app = app_factory(max_entry_bytes=1000)
    async with served(app) as client:
        await client.get("/big")
    assert nonzero("/big") == {"misses": 1, "not_stored": 1, "not_stored_too_large": 1}


async def test_not_stored_encoding_error(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**_: Any) -> bytes:
        raise ValueError("cannot encode this entry")

    app = app_factory()
    async with served(app) as client:
        monkeypatch.setattr(kernels, "write_entry", refuse)
        await client.get("/async/1")
    assert nonzero("/async/{item_id}") == {"misses": 1, "not_stored": 1, "not_stored_error": 1}


async def test_not_stored_no_store_and_endpoint_error(clean_cache_setup: None) -> None:
    app = FastAPI(lifespan=cache_lifespan())

    @app.get("/boom")
    @cache_response(ttl=60)
    async def boom() -> dict[str, str]:
        raise RuntimeError("the endpoint's own bug")

    @app.get("/secret")
    @cache_response(ttl=60)
    async def secret(response: Response) -> dict[str, str]:
        response.headers["Cache-Control"] = "no-store"
        return {"s": "x"}

    async with served(app) as client:
        assert (await client.get("/secret")).headers[STATUS] == "MISS"
        with pytest.raises(RuntimeError, match="own bug"):
            await client.get("/boom")
    assert nonzero("/secret") == {"misses": 1, "not_stored": 1, "not_stored_no_store": 1}
    assert nonzero("/boom") == {"misses": 1, "not_stored": 1, "not_stored_error": 1}


@pytest.mark.redis
async def test_backend_errors_counted(redis_process: RedisServer, clean_cache_setup: None) -> None:
    app = build_app(redis_lifespan(redis_process))
    async with served(app) as client:
        assert (await client.get("/model/1")).headers[STATUS] == "MISS"
        redis_process.stop()
        for _ in range(2):
            assert (await client.get("/model/1")).headers[STATUS] == "MISS"
        redis_process.start()
        assert (await client.get("/model/1")).headers[STATUS] == "MISS"
        assert (await client.get("/model/1")).headers[STATUS] == "HIT"
    row = nonzero("/model/{item_id}")
    row.pop("bytes_before_compression")
    row.pop("bytes_after_compression")
    # down: each request fails its fetch, then makes no other backend call (no lock, no
    # begin_compute, no store: not stored, reason error)
    assert row == {
        "misses": 4,
        "hits": 1,
        "stored": 2,
        "backend_errors": 2,
        "not_stored": 2,
        "not_stored_error": 2,
    }


async def test_breaker_state_follows_the_backend(
    redis_process: RedisServer, clean_cache_setup: None
) -> None:
    app = build_app(redis_lifespan(redis_process, breaker_failures=2))
    async with served(app) as client:
        assert (await client.get("/model/1")).headers[STATUS] == "MISS"
        assert CacheSetup.stats()["breaker"] == "closed"
        redis_process.stop()
        for _ in range(3):  # two failures open it; the third is refused without a call
            assert (await client.get("/model/1")).status_code == 200
        assert CacheSetup.stats()["breaker"] == "open"
    row = nonzero("/model/{item_id}")
    assert row["backend_errors"] == 2  # calls the open breaker refused are not errors
    assert row["misses"] == 4


async def test_metrics_route_of_a_cached_app(app_factory: AppFactory) -> None:
    app = app_factory()
    metrics_route(app, registry=CollectorRegistry())
    async with served(app) as client:
        await client.get("/async/1")
        await client.get("/async/1")
        await client.get("/cookie")
        text = (await client.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def sample(name: str, **labels: str) -> float:
        return samples[(f"fastapi_cachemate_{name}", tuple(sorted(labels.items())))]

    assert sample("requests_total", endpoint="/async/{item_id}", result="hit") == 1
    assert sample("requests_total", endpoint="/async/{item_id}", result="miss") == 1
    assert sample("stored_total", endpoint="/async/{item_id}") == 1
    assert sample("not_stored_total", endpoint="/cookie", reason="set_cookie") == 1
    assert sample("breaker_open") == 0
    # the metrics route itself is not a cached endpoint
    assert not any(labels and dict(labels).get("endpoint") == "/metrics" for _, labels in samples)


async def test_included_router_counts_under_its_full_path(clean_cache_setup: None) -> None:
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/thing/{n}")
    @cache_response(ttl=60)
    async def thing(n: int) -> dict[str, int]:
        return {"n": n}

    app = FastAPI(lifespan=cache_lifespan())
    app.include_router(router, prefix="/v1")
    app.include_router(router, prefix="/v2")
    async with served(app) as client:
        await client.get("/v1/thing/1")
        await client.get("/v1/thing/1")
        await client.get("/v2/thing/1")
    endpoints = metrics.snapshot()["endpoints"]
    assert endpoints["/v1/thing/{n}"]["hits"] == 1
    assert endpoints["/v2/thing/{n}"]["misses"] == 1
