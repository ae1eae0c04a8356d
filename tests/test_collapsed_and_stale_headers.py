"""The HTTP headers (validators, Age, Cache-Status) on the shared paths: collapsed requests,
revalidation through the single flight, stale answers, and unstorable responses releasing
their waiters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest
from fastapi import FastAPI

from fastapi_cachemate import CacheSetup, metrics
from fastapi_cachemate._runtime.singleflight import SingleFlight
from tests.support.apps import served
from tests.support.entries import age_entry
from tests.support.fixtures import HttpApp

STATUS = "x-cache-status"
CACHE_STATUS = "cache-status"
T = TypeVar("T")


class _CountingFlight(SingleFlight):
    """The real single flight, telling the test when `expected` callers have entered it."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.entered = 0
        self.all_in = asyncio.Event()

    async def run(self, key: bytes, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        self.entered += 1
        if self.entered >= self.expected:
            self.all_in.set()
        return await super().run(key, fn)


async def _concurrent(
    app: FastAPI, client: httpx.AsyncClient, requests: list[tuple[str, dict[str, str]]]
) -> list[httpx.Response]:
    """Send the requests together; /gated is held until every one of them has entered the
    single flight (the first computes, the others wait for it)."""
    flight = _CountingFlight(len(requests))
    CacheSetup.runtime().flight = flight
    app.state.gate = asyncio.Event()
    tasks = [
        asyncio.ensure_future(client.request(method, "/gated", headers=headers))
        for method, headers in requests
    ]
    await flight.all_in.wait()
    app.state.gate.set()
    return list(await asyncio.gather(*tasks))


async def test_collapsed_requests_get_their_own_form(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        plain, other, conditional = await _concurrent(
            app, client, [("GET", {}), ("GET", {}), ("GET", {"if-none-match": "*"})]
        )
    assert app.state.calls["gated"] == 1
    # whichever request got to the computation first leads (the backend's round trips
    # decide, not the order of sending): one stored it, the others waited for it
    answers = [plain, other, conditional]
    states = sorted(r.headers[CACHE_STATUS] for r in answers)
    assert states == [
        "fastapi-cachemate; fwd=uri-miss; collapsed",
        "fastapi-cachemate; fwd=uri-miss; collapsed",
        "fastapi-cachemate; fwd=uri-miss; stored; ttl=60",
    ]
    assert {r.headers[STATUS] for r in answers} == {"MISS"}
    assert plain.status_code == other.status_code == 200
    assert plain.content == other.content
    assert plain.headers["etag"] == other.headers["etag"]
    follower = plain if plain.headers[CACHE_STATUS].endswith("collapsed") else other
    max_age = int(follower.headers["cache-control"].removeprefix("max-age="))
    assert max_age > 0
    assert max_age + int(follower.headers["age"]) <= 60
    assert conditional.status_code == 304
    assert conditional.content == b""


async def test_unstorable_response_is_not_shared_with_waiters(http_app: HttpApp) -> None:
    app = http_app()
    app.state.gated_cookie = True  # Set-Cookie: never stored, never shared
    async with served(app) as client:
        answers = await _concurrent(app, client, [("GET", {})] * 3)
    assert app.state.calls["gated"] == 3  # each waiter computed for itself
    assert sorted(r.cookies["who"] for r in answers) == ["1", "2", "3"]
    for response in answers:
        assert response.headers[CACHE_STATUS].endswith("detail=set-cookie")


async def test_revalidation_goes_through_one_computation(http_app: HttpApp) -> None:
    app = http_app(client_cache_control="revalidate", revalidate_min_age=5)
    async with served(app) as client:
        first = await client.get("/gated")
        await age_entry(app, "/gated", 6)
        no_cache = {"cache-control": "no-cache"}
        answers = await _concurrent(app, client, [("GET", no_cache)] * 4)
        after = await client.get("/gated", headers=no_cache)
    assert first.json() == {"n": 1}
    assert app.state.calls["gated"] == 2  # four revalidating clients, one computation
    assert {r.json()["n"] for r in answers} == {2}
    statuses = sorted(r.headers[CACHE_STATUS] for r in answers)
    assert statuses[0] == "fastapi-cachemate; fwd=request; collapsed"
    assert statuses[-1] == "fastapi-cachemate; fwd=request; stored; ttl=60"
    assert after.headers[STATUS] == "HIT"  # the refreshed entry is younger than the minimum
    assert after.json() == {"n": 2}


@pytest.mark.parametrize("backend_kind", ["memory"], indirect=True)
async def test_stale_while_revalidate_headers(http_app: HttpApp) -> None:
    app = http_app(stale_while_revalidate=30)
    async with served(app) as client:
        await client.get("/counter")
        await age_entry(app, "/counter", 64.5)  # 4.5 s past its 60 s ttl
        stale = await client.get("/counter")
    assert stale.headers[STATUS] == "STALE"
    assert stale.headers[CACHE_STATUS] == "fastapi-cachemate; hit; ttl=-5"
    assert stale.headers["cache-control"] == "max-age=0"
    assert stale.headers["age"] == "64"


@pytest.mark.parametrize(
    ("method", "path", "detail", "counter"),
    [
        ("GET", "/default/not-found", "status-404", "status"),
        ("GET", "/default/set-cookie", "set-cookie", "set_cookie"),
        ("GET", "/default/no-store", "no-store", "no_store"),
        ("GET", "/default/private", "private", "private"),
        ("GET", "/default/vary-star", "vary-star", "vary_star"),
        ("GET", "/default/vary-unkeyed", "vary-unkeyed", "vary_unkeyed"),
        ("HEAD", "/both-raw", "head", "head"),
        ("HEAD", "/empty", "head-empty-body", "head_empty_body"),
    ],
)
async def test_verdicts_are_counted_as_not_stored(
    http_app: HttpApp, method: str, path: str, detail: str, counter: str
) -> None:
    metrics.reset()
    app = http_app()
    async with served(app) as client:
        answer = await client.request(method, path)
    assert answer.headers[STATUS] == "MISS"
    assert answer.headers[CACHE_STATUS] == f"fastapi-cachemate; fwd=uri-miss; detail={detail}"
    counted = [{k: v for k, v in r.items() if v} for r in metrics.snapshot()["endpoints"].values()]
    (row,) = [r for r in counted if r]  # the one endpoint requested
    assert row == {"misses": 1, "not_stored": 1, f"not_stored_{counter}": 1}


async def test_authorization_refusal_is_counted(http_app: HttpApp) -> None:
    metrics.reset()
    app = http_app()
    async with served(app) as client:
        answer = await client.get("/whoami", headers={"authorization": "Bearer alice"})
    assert answer.headers[CACHE_STATUS] == "fastapi-cachemate; fwd=request; detail=authorization"
    row = {k: v for k, v in metrics.snapshot()["endpoints"]["/whoami"].items() if v}
    assert row == {"no_cache": 1, "not_stored": 1, "not_stored_authorization": 1}
