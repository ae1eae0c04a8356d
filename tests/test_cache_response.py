"""cache_response on real apps, on the memory backend and on a real redis-server."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.support.apps import FILE_BODY, served
from tests.support.fixtures import AppFactory

STATUS = "x-cache-status"


CACHE_HEADERS = (STATUS, "x-dependency", "cache-status", "age", "cache-control")


def _without_cache_headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items() if k not in CACHE_HEADERS]


async def _miss_then_hit(
    client: httpx.AsyncClient, url: str
) -> tuple[httpx.Response, httpx.Response]:
    first = await client.get(url)
    second = await client.get(url)
    assert first.headers[STATUS] == "MISS", first.headers
    assert second.headers[STATUS] == "HIT", second.headers
    assert second.status_code == first.status_code
    assert second.content == first.content
    assert _without_cache_headers(second) == _without_cache_headers(first)
    return first, second


async def test_async_endpoint_miss_then_hit(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        first, _ = await _miss_then_hit(client, "/async/7?q=a")
        assert first.json() == {"item_id": 7, "q": "a"}
        assert first.headers["content-type"] == "application/json"
        assert first.headers["cache-control"] == "max-age=60"
        other = await client.get("/async/7?q=b")
        assert other.headers[STATUS] == "MISS"
        assert other.json() == {"item_id": 7, "q": "b"}
    assert app.state.calls["async"] == 2


async def test_sync_endpoint_runs_in_threadpool_and_is_cached(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        first, _ = await _miss_then_hit(client, "/sync/3")
        assert first.json() == {"item_id": 3, "sync": True}
    assert app.state.calls["sync"] == 1
    assert app.state.threads != [threading.get_ident()]


async def test_hit_skips_endpoint_and_response_model_validation(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        first, _ = await _miss_then_hit(client, "/model/5")
        # rendered with the route's response_model and response_model_exclude_none
        assert first.json() == {"id": 5, "name": "item 5"}
        validations = app.state.calls["validate"]
        assert validations == 1
        for _ in range(3):
            again = await client.get("/model/5")
            assert again.headers[STATUS] == "HIT"
    assert app.state.calls["model"] == 1
    assert app.state.calls["validate"] == validations


async def test_query_model_and_route_status_code(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        first, _ = await _miss_then_hit(client, "/page?page=2&size=5")
        assert first.json() == {"page": 2, "size": 5}
        created, _ = await _miss_then_hit(client, "/created")
        assert created.status_code == 202
    assert app.state.calls["page"] == 1
    assert app.state.calls["created"] == 1


async def test_injected_response_status_and_headers_survive(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        first = await client.get("/injected")
        second = await client.get("/injected")
    for response, dependency_run in ((first, "1"), (second, "2")):
        assert response.status_code == 203
        assert response.headers["x-endpoint"] == "set"
        # headers of the request's dependencies are this request's, never replayed
        assert response.headers.get_list("x-dependency") == [dependency_run]
        assert response.json() == {"injected": "yes"}
    assert [first.headers[STATUS], second.headers[STATUS]] == ["MISS", "HIT"]
    assert app.state.calls["injected"] == 1


async def test_returned_response_gets_injected_headers(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        first = await client.get("/injected-json")
        second = await client.get("/injected-json")
    for response, dependency_run in ((first, "1"), (second, "2")):
        assert response.json() == {"returned": True}
        assert response.headers["x-own"] == "1"
        assert response.headers["x-endpoint"] == "set"
        assert response.headers.get_list("x-dependency") == [dependency_run]
    assert [first.headers[STATUS], second.headers[STATUS]] == ["MISS", "HIT"]
    assert app.state.calls["injected-json"] == 1


@pytest.mark.parametrize(
    ("url", "content_type", "body"),
    [
        ("/json", "application/json", b'{"kind":"json","n":[1,2,3]}'),
        ("/html", "text/html; charset=utf-8", b"<h1>cached</h1>"),
        ("/html-str", "text/html; charset=utf-8", b"<p>rendered by the route's response_class</p>"),
        ("/plain", "text/plain; charset=utf-8", b"plain text"),
        ("/custom", "text/csv; charset=utf-8", b"a,b\n1,2\n"),
        ("/big", "text/plain; charset=utf-8", b"x" * 50_000),
    ],
)
async def test_response_classes_are_cached_as_they_are(
    app_factory: AppFactory, url: str, content_type: str, body: bytes
) -> None:
    app = app_factory(compression_mode="smart")
    async with served(app) as client:
        first, _ = await _miss_then_hit(client, url)
    assert first.headers["content-type"] == content_type
    assert first.content == body
    assert first.headers["content-length"] == str(len(body))
    assert app.state.calls[url.strip("/")] == 1


@pytest.mark.parametrize("mode", ["all", "smart", "disabled"])
async def test_compression_modes_round_trip(app_factory: AppFactory, mode: str) -> None:
    app = app_factory(compression_mode=mode, compression_min_size_bytes=0)
    async with served(app) as client:
        first, _ = await _miss_then_hit(client, "/big")
    assert first.content == b"x" * 50_000


@pytest.mark.parametrize(
    ("url", "body"),
    [("/stream", b"one two three"), ("/file", FILE_BODY)],
)
async def test_streaming_and_file_responses_pass_through(
    app_factory: AppFactory, url: str, body: bytes
) -> None:
    app = app_factory()
    async with served(app) as client:
        for _ in range(2):
            response = await client.get(url)
            assert response.status_code == 200
            assert response.content == body
            assert response.headers[STATUS] == "NO_CACHE"
    assert app.state.calls[url.strip("/")] == 2


@pytest.mark.parametrize(
    ("url", "status"),
    [("/missing", 404), ("/error-json", 503), ("/cookie", 200), ("/private", 200)],
)
async def test_responses_that_must_not_be_stored(
    app_factory: AppFactory, url: str, status: int
) -> None:
    app = app_factory()
    async with served(app) as client:
        answers = [await client.get(url) for _ in range(2)]
    assert [r.status_code for r in answers] == [status, status]
    # an HTTPException is answered by FastAPI's handler: no cache header at all
    expected = [None, None] if url == "/missing" else ["MISS", "MISS"]
    assert [r.headers.get(STATUS) for r in answers] == expected
    assert app.state.calls[url.strip("/")] == 2
    if url == "/cookie":
        assert [r.cookies["session"] for r in answers] == ["1", "2"]


async def test_endpoint_cache_control_is_kept(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        _, second = await _miss_then_hit(client, "/own-cache-control")
    assert second.headers.get_list("cache-control") == ["public, max-age=5"]
    assert app.state.calls["own-cache-control"] == 1
