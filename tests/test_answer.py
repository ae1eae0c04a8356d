"""Validators and freshness (fastapi_cachemate/_request/http.py): ETag, If-None-Match -> 304, Age
and max-age, HEAD, Vary, client_cache_control="revalidate", the stale and collapsed answers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._request import answer
from fastapi_cachemate._request.answer import etag_matches, freshness
from tests.support.apps import asgi_call, served
from tests.support.entries import age_entry
from tests.support.fixtures import HttpApp

STATUS = "x-cache-status"
CACHE_STATUS = "cache-status"
INJECTED = ("__dependencies_request__", "__dependencies_response__")


def _values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k == name]


# --- If-None-Match ----------------------------------------------------------------------------


def test_etag_matches() -> None:
    tag = b'"abc"'
    assert etag_matches([b'"abc"'], tag)
    assert etag_matches([b'W/"abc"'], tag)  # weak comparison
    assert etag_matches([b'"abc"'], b'W/"abc"')
    assert etag_matches([b'"x", "y" ,W/"abc"'], tag)  # a list
    assert etag_matches([b'"x"', b'"abc"'], tag)  # several header lines
    assert etag_matches([b"*"], tag)
    assert etag_matches([b'"a,b", "abc"'], tag)  # a comma inside a tag does not split
    assert etag_matches([b'"a,b"'], b'"a,b"')
    assert not etag_matches([b'"abcd"', b'"ab"', b"abc", b'W/"ABC"'], tag)
    assert not etag_matches([b""], tag)
    assert not etag_matches([b'garbage, "unterminated'], tag)
    assert not etag_matches([b"*"], b"")  # nothing to match


_OPAQUE = st.text(alphabet="abcXYZ019-_,/ W", max_size=6)  # etagc, a comma and a space


@given(
    target=_OPAQUE,
    target_weak=st.booleans(),
    tags=st.lists(st.tuples(st.booleans(), _OPAQUE), max_size=5),
    star=st.booleans(),
    lines=st.integers(min_value=1, max_value=3),
    separator=st.sampled_from([", ", ",", " , ", ",,"]),
)
def test_etag_matches_any_list(
    target: str,
    target_weak: bool,
    tags: list[tuple[bool, str]],
    star: bool,
    lines: int,
    separator: str,
) -> None:
    members = [("W/" if weak else "") + f'"{opaque}"' for weak, opaque in tags]
    if star:
        members.append("*")
    # the members, split over `lines` header lines
    values = [separator.join(members[i::lines]).encode() for i in range(lines)]
    etag = (("W/" if target_weak else "") + f'"{target}"').encode()
    expected = star or any(opaque == target for _, opaque in tags)
    assert etag_matches(values, etag) == expected


def _page_etag(name: str) -> str:
    body = json.dumps({"page": name}, separators=(",", ":")).encode()
    return kernels.body_etag(body).decode()


def _conditions(etag: str) -> list[list[tuple[str, str]]]:
    weak = f"W/{etag}"
    return [
        [("if-none-match", etag)],  # strong
        [("if-none-match", weak)],  # weak
        [("if-none-match", f'"other", {weak}, "more"')],  # a list
        [("if-none-match", '"other"'), ("if-none-match", etag)],  # two lines
        [("if-none-match", "*")],
    ]


def _assert_not_modified(response: httpx.Response, etag: str) -> None:
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"].startswith("max-age=")
    for name in ("content-length", "content-type"):
        assert name not in response.headers


@pytest.mark.parametrize("case", range(5), ids=["strong", "weak", "list", "lines", "star"])
async def test_304_on_hit_and_on_miss(http_app: HttpApp, case: int) -> None:
    app = http_app()
    async with served(app) as client:
        etag = _page_etag("a")
        condition = httpx.Headers(_conditions(etag)[case])
        miss = await client.get("/pages/a", headers=condition)
        hit = await client.get("/pages/a", headers=condition)
        full = await client.get("/pages/a")
        other = await client.get("/pages/a", headers={"if-none-match": '"nope", W/"nope"'})
    _assert_not_modified(miss, etag)
    assert miss.headers[STATUS] == "MISS"
    assert miss.headers[CACHE_STATUS] == "fastapi-cachemate; fwd=uri-miss; stored; ttl=60"
    _assert_not_modified(hit, etag)
    assert hit.headers[STATUS] == "HIT"
    assert "age" in hit.headers
    # the 304 on the miss stored the entry: the full response comes from it
    assert full.headers[STATUS] == other.headers[STATUS] == "HIT"
    assert full.status_code == other.status_code == 200
    assert full.content == other.content == b'{"page":"a"}'
    assert full.headers["etag"] == etag
    assert app.state.calls["page-a"] == 1


async def test_304_carries_vary(http_app: HttpApp) -> None:
    app = http_app()
    headers = {"x-token": "t", "accept-language": "fr"}
    async with served(app) as client:
        first = await client.get("/token", headers=headers)
        etag = first.headers["etag"]
        hit = await client.get("/token", headers={**headers, "if-none-match": etag})
    assert first.headers["vary"] == "accept-language, x-token"
    _assert_not_modified(hit, etag)
    assert hit.headers["vary"] == "accept-language, x-token"


async def test_own_weak_etag_is_kept_and_compared_weakly(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        first = await client.get("/default/own-etag")
        strong = await client.get("/default/own-etag", headers={"if-none-match": '"v1"'})
        weak = await client.get("/default/own-etag", headers={"if-none-match": 'W/"v1"'})
    assert first.headers.get_list("etag") == ['W/"v1"']
    for response in (strong, weak):
        _assert_not_modified(response, 'W/"v1"')


async def test_no_304_for_a_stored_404(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        first = await client.get("/custom/not-found")
        again = await client.get("/custom/not-found", headers={"if-none-match": "*"})
    assert first.status_code == again.status_code == 404
    assert again.headers[STATUS] == "HIT"
    assert again.content == first.content


async def test_304_with_the_endpoints_own_vary(
    http_app: HttpApp,
) -> None:
    app = http_app()
    async with served(app) as client:
        first = await client.get("/language", headers={"accept-language": "de"})
        etag = first.headers["etag"]
        hit = await client.get(
            "/language", headers={"accept-language": "de", "if-none-match": etag}
        )
    _assert_not_modified(hit, etag)
    # the endpoint's own Vary is not repeated by the cache
    assert first.headers.get_list("vary") == ["Accept-Language"]
    assert hit.headers.get_list("vary") == ["Accept-Language"]


# --- Age and max-age --------------------------------------------------------------------------


@given(
    age=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    ttl=st.floats(min_value=0.001, max_value=1e7, allow_nan=False),
)
def test_freshness_never_promises_more_than_the_entry_has(age: float, ttl: float) -> None:
    remaining = ttl - age
    whole_age, max_age = freshness(age, remaining)
    assert whole_age >= 0
    assert max_age >= 0
    assert whole_age <= age
    if remaining > 0:
        assert max_age <= remaining
        assert whole_age + max_age <= ttl
    else:  # stale or expired: nothing promised
        assert max_age == 0


def test_freshness_edges() -> None:
    assert freshness(0.0, 300.0) == (0, 300)
    assert freshness(0.001, 299.999) == (0, 299)
    assert freshness(5.0, -3.0) == (5, 0)  # stale: nothing promised
    assert freshness(float("nan"), float("nan")) == (0, 0)
    assert freshness(float("inf"), float("-inf")) == (0, 0)


@pytest.mark.parametrize(
    ("path", "older_by"),
    [
        ("/counter", 0.0),
        ("/counter", 0.4),
        ("/counter", 1.0),
        ("/counter", 29.7),
        ("/counter", 59.2),
        ("/short", 0.6),
        ("/short", 1.9),
        ("/short", 2.45),
    ],
)
async def test_age_plus_max_age_never_exceed_the_entry(
    http_app: HttpApp, path: str, older_by: float
) -> None:
    app = http_app()
    async with served(app) as client:
        miss = await client.get(path)
        created, ttl = await age_entry(app, path, older_by)
        before = time.time()
        hit = await client.get(path)
        after = time.time()
    assert miss.headers["cache-control"] == f"max-age={int(ttl)}"
    assert hit.headers[STATUS] == "HIT"
    age = int(hit.headers["age"])
    max_age = int(hit.headers["cache-control"].removeprefix("max-age="))
    ttl_param = int(hit.headers[CACHE_STATUS].rsplit("ttl=", 1)[1])
    # what the cache saw lies between `before` and `after`
    assert math.floor(before - created) <= age <= math.floor(after - created)
    assert math.floor(created + ttl - after) <= max_age <= created + ttl - before
    assert ttl_param == max_age
    assert age + max_age <= ttl


# --- HEAD ---------------------------------------------------------------------------------------


async def test_head_is_stored_with_the_full_body_then_get(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app):
        status, head, body = await asgi_call(app, "HEAD", "/both")
        assert (status, body) == (200, b"")
        assert _values(head, b"x-cache-status") == [b"MISS"]
        length = int(_values(head, b"content-length")[0])
        status, got, full = await asgi_call(app, "GET", "/both")
        status2, head2, body2 = await asgi_call(app, "HEAD", "/both")
    assert status == 200
    assert _values(got, b"x-cache-status") == [b"HIT"]
    assert len(full) == length > 100
    assert json.loads(full)["n"] == 1
    assert (status2, body2) == (200, b"")
    assert _values(head2, b"x-cache-status") == [b"HIT"]
    assert _values(head2, b"content-length") == [str(length).encode()]
    assert app.state.calls["both"] == 1


async def test_head_to_a_raw_endpoint_never_stores_and_uses_the_get_entry(
    http_app: HttpApp,
) -> None:
    app = http_app()
    async with served(app) as client:
        head = await client.head("/both-raw")
        get = await client.get("/both-raw")
        head_hit = await client.head("/both-raw")
        get_hit = await client.get("/both-raw")
        conditional = await client.head("/both-raw", headers={"if-none-match": "*"})
    assert head.headers[STATUS] == "MISS"
    assert head.headers[CACHE_STATUS] == "fastapi-cachemate; fwd=uri-miss; detail=head"
    assert head.headers["x-method"] == "HEAD"
    assert get.headers[STATUS] == "MISS"  # the HEAD answer was not stored
    assert get.content == b"full body 2"
    assert head_hit.headers[STATUS] == get_hit.headers[STATUS] == "HIT"
    assert head_hit.headers["x-method"] == "GET"
    assert head_hit.headers["content-length"] == str(len(b"full body 2"))
    assert get_hit.content == b"full body 2"
    assert conditional.status_code == 304
    assert app.state.calls["both-raw"] == 2


# --- client_cache_control="revalidate" -------------------------------------------------------


async def test_revalidate_mode_refreshes_an_old_enough_entry_once(http_app: HttpApp) -> None:
    app = http_app(client_cache_control="revalidate", revalidate_min_age=10)
    no_cache = {"cache-control": "no-cache"}
    async with served(app) as client:
        first = await client.get("/counter")
        # younger than revalidate_min_age: served from the entry, however often asked
        young = [await client.get("/counter", headers=no_cache) for _ in range(5)]
        await age_entry(app, "/counter", 11)
        refreshed = await client.get("/counter", headers={"cache-control": "max-age=0"})
        after = [await client.get("/counter", headers=no_cache) for _ in range(3)]
        plain = await client.get("/counter")
    assert first.json()["n"] == 1
    assert {r.headers[STATUS] for r in young} == {"HIT"}
    assert {r.json()["n"] for r in young} == {1}
    assert refreshed.headers[STATUS] == "MISS"
    assert refreshed.headers[CACHE_STATUS] == "fastapi-cachemate; fwd=request; stored; ttl=60"
    assert refreshed.json()["n"] == 2
    # the refreshed entry is young again: one recomputation, however many clients ask
    assert {r.json()["n"] for r in [*after, plain]} == {2}
    assert {r.headers[STATUS] for r in [*after, plain]} == {"HIT"}
    assert app.state.calls["counter"] == 2


async def test_revalidate_mode_client_max_age(http_app: HttpApp) -> None:
    app = http_app(client_cache_control="revalidate", revalidate_min_age=0)
    async with served(app) as client:
        await client.get("/counter")
        await age_entry(app, "/counter", 20)
        tolerant = await client.get("/counter", headers={"cache-control": "max-age=30"})
        strict = await client.get("/counter", headers={"cache-control": "max-age=10"})
    assert tolerant.headers[STATUS] == "HIT"
    assert tolerant.json()["n"] == 1
    assert strict.headers[STATUS] == "MISS"
    assert strict.json()["n"] == 2


async def test_bypass_mode_is_the_seeds(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app) as client:
        await client.get("/counter")
        skipped = await client.get("/counter", headers={"cache-control": "no-cache"})
        cached = await client.get("/counter", headers={"cache-control": "max-age=0"})
    assert skipped.headers[STATUS] == "NO_CACHE"
    assert cached.headers[STATUS] == "HIT"


# --- stale and collapsed answers -------------------------------------------------------------


def _request(method: str = "GET", headers: Sequence[tuple[bytes, bytes]] = ()) -> Request:
    return Request({"type": "http", "method": method, "headers": list(headers), "path": "/"})


def _entry(created: float, now: float, ttl: float = 60, grace: float = 30) -> Any:
    body = b"stored body"
    blob = kernels.write_entry(
        status=200,
        headers=[(b"content-length", b"11"), (b"etag", kernels.body_etag(body))],
        body=body,
        created=created,
        ttl=ttl,
        grace=grace,
    )
    return kernels.read_entry(blob, now)


def test_stale_answer() -> None:
    entry = _entry(created=1000.0, now=1072.5)  # 12.5 s past its 60 s ttl
    assert entry.state == kernels.STALE
    response = answer.stale(entry, _request(), Response(), x_cache_status=b"STALE")
    headers = dict(response.raw_headers)
    assert headers[b"cache-status"] == b"fastapi-cachemate; hit; ttl=-13"
    assert headers[b"x-cache-status"] == b"STALE"
    assert headers[b"cache-control"] == b"max-age=0"
    assert headers[b"age"] == b"72"
    assert response.body == b"stored body"
    fallback = answer.stale(
        entry, _request(), Response(), x_cache_status=b"STALE_IF_ERROR", detail=b"stale-if-error"
    )
    assert dict(fallback.raw_headers)[b"cache-status"] == (
        b"fastapi-cachemate; hit; ttl=-13; detail=stale-if-error"
    )
    etag = entry.etag
    conditional = answer.stale(
        entry, _request(headers=[(b"if-none-match", etag)]), Response(), x_cache_status=b"STALE"
    )
    assert conditional.status_code == 304
    assert conditional.body == b""


def test_collapsed_answer_headers() -> None:
    entry = _entry(created=1000.0, now=1000.2)
    dependency = Response()
    dependency.raw_headers.append((b"x-dependency", b"mine"))
    response = answer.collapsed(entry, _request("HEAD"), dependency, fwd=b"uri-miss")
    headers = response.raw_headers
    assert (b"cache-status", b"fastapi-cachemate; fwd=uri-miss; collapsed") in headers
    assert (b"x-cache-status", b"MISS") in headers
    assert (b"cache-control", b"max-age=59") in headers
    assert (b"x-dependency", b"mine") in headers
    assert (b"content-length", b"11") in headers
    assert response.body == b""  # HEAD
    assert entry.headers == [(b"content-length", b"11"), (b"etag", entry.etag)]  # untouched
