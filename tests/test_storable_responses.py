"""What may be stored: the table over statuses and response headers, per-status
TTLs, requests that never use the cache (Authorization, a body), and what each says in
X-Cache-Status and Cache-Status."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from fastapi_cachemate._request.rules import StatusTTLs
from fastapi_cachemate.cache import cache_response
from tests.support.apps import CASES, CUSTOM_STATUSES, served
from tests.support.fixtures import HttpApp

STATUS = "x-cache-status"
CACHE_STATUS = "cache-status"

# (case, ttl under the default statuses or None, ttl under CUSTOM_STATUSES or None, detail)
# The detail is the Cache-Status detail of a response that is not stored.
TABLE: list[tuple[str, float | None, float | None, str | None]] = [
    ("ok", 60, 300, None),
    ("created", 60, 120, None),
    ("non-authoritative", 60, 120, None),
    ("no-content", 60, 120, None),
    ("partial", None, None, "status-206"),
    ("moved", None, 3600, "status-301"),
    ("found", None, None, "status-302"),
    ("not-found", None, 30, "status-404"),
    ("gone", None, None, "status-410"),
    ("error", None, None, "status-500"),
    ("unavailable", None, None, "status-503"),
    ("set-cookie", None, None, "set-cookie"),
    ("set-cookie-404", None, None, "status-404"),  # default: the status is checked first
    ("no-store", None, None, "no-store"),
    ("private", None, None, "private"),
    ("private-field", None, None, "private"),
    ("no-cache", 60, 300, None),  # stored: the directive is for the client (docs/http.md)
    ("public", 60, 300, None),
    ("vary-star", None, None, "vary-star"),
    ("vary-unkeyed", None, None, "vary-unkeyed"),
    ("own-etag", 60, 300, None),
]


#: Where /custom/... says another reason than /default/...: 404 is a stored status there.
CUSTOM_DETAIL = {"set-cookie-404": "set-cookie"}


def test_the_table_covers_every_case() -> None:
    assert sorted(case for case, *_ in TABLE) == sorted(CASES)


async def _twice(client: httpx.AsyncClient, url: str) -> tuple[httpx.Response, httpx.Response]:
    first = await client.get(url, follow_redirects=False)
    second = await client.get(url, follow_redirects=False)
    return first, second


@pytest.mark.parametrize("kind", ["default", "custom"])
@pytest.mark.parametrize(("case", "default_ttl", "custom_ttl", "detail"), TABLE)
async def test_what_is_stored(
    http_app: HttpApp,
    kind: str,
    case: str,
    default_ttl: float | None,
    custom_ttl: float | None,
    detail: str | None,
) -> None:
    app = http_app()
    ttl = default_ttl if kind == "default" else custom_ttl
    if kind == "custom":
        detail = CUSTOM_DETAIL.get(case, detail)
    status, headers = CASES[case]
    async with served(app) as client:
        first, second = await _twice(client, f"/{kind}/{case}")
    assert first.status_code == second.status_code == status
    own_cache_control = [v for k, v in headers if k == "cache-control"]
    if ttl is None:
        # computed twice, each time "MISS" with the reason, never a cache header added
        assert app.state.calls[f"{kind}/{case}"] == 2
        for response in (first, second):
            assert response.headers[STATUS] == "MISS"
            assert response.headers[CACHE_STATUS] == (
                f"fastapi-cachemate; fwd=uri-miss; detail={detail or f'status-{status}'}"
            )
            assert response.headers.get_list("cache-control") == own_cache_control
            assert "age" not in response.headers
            if not any(k == "etag" for k, _ in headers):
                assert "etag" not in response.headers
        if status not in (204, 304):
            assert first.content != second.content  # two computations
        if case.startswith("set-cookie"):
            assert second.headers["set-cookie"].startswith("session=abc")
        return
    assert app.state.calls[f"{kind}/{case}"] == 1
    assert [first.headers[STATUS], second.headers[STATUS]] == ["MISS", "HIT"]
    assert second.content == first.content
    assert first.headers[CACHE_STATUS] == f"fastapi-cachemate; fwd=uri-miss; stored; ttl={ttl:.0f}"
    assert second.headers[CACHE_STATUS].startswith("fastapi-cachemate; hit; ttl=")
    hit_ttl = int(second.headers[CACHE_STATUS].rsplit("=", 1)[1])
    assert 0 <= hit_ttl <= ttl
    if own_cache_control:
        assert first.headers.get_list("cache-control") == own_cache_control
        assert second.headers.get_list("cache-control") == own_cache_control
    else:
        # the miss promises the status's ttl; the hit what is left of it
        assert first.headers["cache-control"] == f"max-age={ttl:.0f}"
        max_age = int(second.headers["cache-control"].removeprefix("max-age="))
        assert max_age + int(second.headers["age"]) <= ttl
    assert first.headers["etag"] == second.headers["etag"]
    if case == "own-etag":
        assert first.headers.get_list("etag") == ['W/"v1"']


async def test_per_status_ttls_are_the_entrys_lifetime(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        for case, ttl in (("ok", 300), ("moved", 3600), ("not-found", 30), ("created", 120)):
            started = time.time()
            first, second = await _twice(client, f"/custom/{case}")
            elapsed = time.time() - started
            assert first.headers["cache-control"] == f"max-age={ttl}"
            hit_ttl = int(second.headers[CACHE_STATUS].rsplit("=", 1)[1])
            assert math.floor(ttl - elapsed) <= hit_ttl <= ttl
        # a 404 stored: the same body, not recomputed, and not turned into a 200
        again = await client.get("/custom/not-found")
        assert again.status_code == 404
        assert again.headers[STATUS] == "HIT"
    assert app.state.calls["custom/not-found"] == 1


# --- raised HTTPExceptions ----------------------------------------------------------------------


async def test_raised_http_exception_of_a_stored_status(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        first, second = await _twice(client, "/raise/404")
    for response in (first, second):
        assert response.status_code == 404
        # what FastAPI's own handler answers, with the exception's headers
        assert response.json() == {"detail": "no 1"}
        assert response.headers["x-why"] == "r"
        assert "x-endpoint" not in response.headers  # discarded with the exception
    assert [first.headers[STATUS], second.headers[STATUS]] == ["MISS", "HIT"]
    assert first.headers["cache-control"] == "max-age=30"
    assert app.state.calls["raise-404"] == 1


@pytest.mark.parametrize(
    ("code", "text", "handler"),
    [(410, "gone for good 1", "gone-handler"), (451, "unavailable 1", "legal-handler")],
)
async def test_raised_http_exception_uses_the_apps_handler(
    http_app: HttpApp, code: int, text: str, handler: str
) -> None:
    app = http_app()
    async with served(app) as client:
        first, second = await _twice(client, f"/raise/{code}")
    assert first.status_code == second.status_code == code
    assert first.text == second.text == text
    assert [first.headers[STATUS], second.headers[STATUS]] == ["MISS", "HIT"]
    assert first.headers["cache-control"] == "max-age=600"
    assert app.state.calls[handler] == 1


@pytest.mark.parametrize("url", ["/raise/403", "/raise-default/404", "/raise-default/500"])
async def test_raised_http_exception_of_another_status_propagates(
    http_app: HttpApp, url: str
) -> None:
    app = http_app()
    async with served(app) as client:
        first, second = await _twice(client, url)
    assert first.status_code == second.status_code == int(url.rsplit("/", 1)[1])
    assert [first.json(), second.json()] == [{"detail": "no 1"}, {"detail": "no 2"}]
    # answered by FastAPI's handler outside the cache: no cache header at all
    assert STATUS not in first.headers
    assert CACHE_STATUS not in second.headers


# --- requests that never use the cache -------------------------------------------------------


async def test_authorization_is_not_served_from_nor_stored_to_the_cache(http_app: HttpApp) -> None:
    app = http_app()
    alice = {"authorization": "Bearer alice"}
    bob = {"authorization": "Bearer bob"}
    async with served(app) as client:
        anonymous = await client.get("/whoami")  # stored: no Authorization
        answers = [await client.get("/whoami", headers=h) for h in (alice, bob, alice, bob)]
        anonymous_again = await client.get("/whoami")
    assert [r.json()["user"] for r in answers] == [
        "Bearer alice",
        "Bearer bob",
        "Bearer alice",
        "Bearer bob",
    ]
    for response in answers:
        assert response.headers[STATUS] == "NO_CACHE"
        assert response.headers[CACHE_STATUS] == (
            "fastapi-cachemate; fwd=request; detail=authorization"
        )
    # the anonymous entry was never replaced by a user's response, nor served to one
    assert anonymous_again.headers[STATUS] == "HIT"
    assert anonymous_again.json() == anonymous.json() == {"user": None, "n": 1}
    assert app.state.calls["whoami"] == 5


async def test_vary_on_authorization_gives_each_user_an_entry(http_app: HttpApp) -> None:
    app = http_app()
    users = {name: {"authorization": f"Bearer {name}"} for name in ("alice", "bob")}
    async with served(app) as client:
        seen: dict[str, list[httpx.Response]] = {"alice": [], "bob": []}
        for _ in range(3):
            for name, headers in users.items():
                seen[name].append(await client.get("/whoami-vary", headers=headers))
    for name, responses in seen.items():
        assert [r.headers[STATUS] for r in responses] == ["MISS", "HIT", "HIT"]
        assert {r.json()["user"] for r in responses} == {f"Bearer {name}"}
        assert len({r.content for r in responses}) == 1
        for response in responses:
            assert response.headers["vary"] == "authorization"
    assert app.state.calls["whoami-vary"] == 2


async def test_public_endpoint_caches_requests_with_authorization(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        first = await client.get("/public", headers={"authorization": "Bearer alice"})
        second = await client.get("/public", headers={"authorization": "Bearer bob"})
        third = await client.get("/public")
    assert [r.headers[STATUS] for r in (first, second, third)] == ["MISS", "HIT", "HIT"]
    assert "vary" not in first.headers
    assert app.state.calls["public"] == 1


async def test_per_user_by_a_named_cookie(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        answers = []
        for session in ("s1", "s2", "s1", "s2"):
            client.cookies.set("session", session)
            answers.append(await client.get("/per-session"))
    assert [r.headers[STATUS] for r in answers] == ["MISS", "MISS", "HIT", "HIT"]
    assert [r.json()["session"] for r in answers] == ["s1", "s2", "s1", "s2"]
    assert answers[0].headers["vary"] == "cookie"
    assert app.state.calls["per-session"] == 2


async def _chunks() -> AsyncIterator[bytes]:
    for chunk in (b"hel", b"lo"):
        yield chunk


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"5")],
        [(b"transfer-encoding", b"chunked")],
    ],
)
async def test_get_with_a_body_is_not_served_from_the_cache(
    http_app: HttpApp, headers: list[tuple[bytes, bytes]]
) -> None:
    app = http_app()
    async with served(app) as client:
        stored = await client.get("/counter")
        content: bytes | AsyncIterator[bytes] = b"hello"
        if headers[0][0] == b"transfer-encoding":
            content = _chunks()
        request = client.build_request("GET", "/counter", content=content)
        for name, value in headers:
            request.headers[name.decode()] = value.decode()
        with_body = await client.send(request)
        after = await client.get("/counter")
    assert stored.headers[STATUS] == "MISS"
    assert with_body.headers[STATUS] == "NO_CACHE"
    assert with_body.headers[CACHE_STATUS] == "fastapi-cachemate; fwd=request; detail=request-body"
    assert with_body.json()["n"] == 2  # computed, not the entry
    assert after.headers[STATUS] == "HIT"
    assert after.json() == stored.json()


async def test_empty_content_length_is_no_body(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        await client.get("/counter")
        again = await client.get("/counter", headers={"content-length": "0"})
    assert again.headers[STATUS] == "HIT"


# --- Cache-Status for each way through the cache --------------------------------------------


async def test_cache_status_values(http_app: HttpApp) -> None:
    app = http_app(bypass_header="X-Bypass", bypass_value="yes")
    async with served(app) as client:
        miss = await client.get("/counter?q=a")
        hit = await client.get("/counter?q=a")
        bypass = await client.get("/counter?q=a", headers={"x-bypass": "yes"})
        no_cache = await client.get("/counter?q=a", headers={"cache-control": "no-cache"})
        post = await client.post("/counter?q=a")
    assert miss.headers[CACHE_STATUS] == "fastapi-cachemate; fwd=uri-miss; stored; ttl=60"
    assert hit.headers[CACHE_STATUS].startswith("fastapi-cachemate; hit; ttl=")
    assert bypass.headers[CACHE_STATUS] == "fastapi-cachemate; fwd=bypass"
    assert bypass.headers[STATUS] == "BYPASS"
    assert no_cache.headers[CACHE_STATUS] == (
        "fastapi-cachemate; fwd=request; detail=client-no-cache"
    )
    assert no_cache.headers[STATUS] == "NO_CACHE"
    assert post.status_code == 405  # GET-only route: FastAPI answers, the cache never runs


# --- the statuses option ----------------------------------------------------------------------


def test_status_ttls() -> None:
    default = StatusTTLs(60)
    assert [default.ttl_for(s) for s in (200, 204, 206, 299, 301, 304, 404, 500)] == [
        60,
        60,
        None,
        60,
        None,
        None,
        None,
        None,
    ]
    custom = StatusTTLs(60, CUSTOM_STATUSES)
    assert [custom.ttl_for(s) for s in (200, 201, 206, 301, 302, 404, 410)] == [
        300,
        120,
        None,
        3600,
        None,
        30,
        None,
    ]
    listed = StatusTTLs(10, [200, 404, "5xx"])
    assert [listed.ttl_for(s) for s in (200, 201, 404, 503)] == [10, None, 10, 10]


@pytest.mark.parametrize(
    ("statuses", "error"),
    [
        ({206: 10}, ValueError),
        ({304: 10}, ValueError),
        ({100: 10}, ValueError),
        ({600: 10}, ValueError),
        ({"6xx": 10}, ValueError),
        ({"2x": 10}, ValueError),
        ({200: 0}, ValueError),
        ({200: float("nan")}, ValueError),
        ({200: "60"}, TypeError),
        ({True: 60}, TypeError),
        ({2.5: 60}, TypeError),
        ("200", TypeError),
    ],
)
def test_bad_statuses_are_refused_at_decoration(statuses: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="statuses"):
        cache_response(ttl=60, statuses=statuses)  # type: ignore[arg-type]
