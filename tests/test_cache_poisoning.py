"""Web cache poisoning, end to end: what an attacker sends first never changes the
response that others receive afterwards.

Every case is checked against the endpoint itself: its own answer to a request (the cache
skipped with Cache-Control: no-cache) is what any client must get, and a second request
is a HIT exactly when the endpoint's answers to the two requests are the same.
(tests/test_key_poisoning.py checks the keys; these check the responses.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI

from tests.support.apps import asgi_call, served
from tests.support.fixtures import HttpApp

STATUS = b"x-cache-status"
NO_CACHE = (b"cache-control", b"no-cache")

Headers = list[tuple[bytes, bytes]]


async def _get(
    app: FastAPI, path: str, query: bytes = b"", headers: Headers | None = None
) -> tuple[bytes, Any]:
    status, sent, body = await asgi_call(app, "GET", path, headers or [], query)
    assert status == 200, (path, query, body)
    return dict(sent)[STATUS], json.loads(body)


async def _reference(
    app: FastAPI, path: str, query: bytes = b"", headers: Headers | None = None
) -> Any:
    """The endpoint's own answer, the cache skipped."""
    status, body = await _get(app, path, query, [*(headers or []), NO_CACHE])
    assert status == b"NO_CACHE"
    return body


UNKEYED = [
    [(b"x-forwarded-host", b"evil.example")],
    [(b"x-host", b"evil.example")],
    [(b"x-forwarded-server", b"evil.example")],
    [(b"x-original-host", b"evil.example")],
    [(b"x-forwarded-prefix", b"/evil")],
    [(b"x-http-method-override", b"POST")],
    [(b"x-rewrite-url", b"/evil")],
    [(b"x-forwarded-scheme", b"nothttp"), (b"x-forwarded-proto", b"nothttp")],
    [(b"forwarded", b"host=evil.example;proto=https")],
    [(b"user-agent", b"<script>evil</script>")],
]


@pytest.mark.parametrize("poison", UNKEYED, ids=[h[0][0].decode() for h in UNKEYED])
async def test_unkeyed_headers_never_change_a_declared_endpoints_entry(
    http_app: HttpApp, poison: Headers
) -> None:
    app = http_app()
    async with served(app):
        expected = await _reference(app, "/echo", b"q=a")
        first = await _get(app, "/echo", b"q=a", poison)
        victim = await _get(app, "/echo", b"q=a")
    # the endpoint cannot see these headers: sharing the entry is correct, and harmless
    assert first == (b"MISS", expected)
    assert victim == (b"HIT", expected)


@pytest.mark.parametrize(
    "poison",
    [p for p in UNKEYED if p[0][0] not in (b"forwarded", b"user-agent", b"x-forwarded-scheme")],
    ids=lambda h: h[0][0].decode(),
)
async def test_override_headers_skip_the_cache_for_raw_request_endpoints(
    http_app: HttpApp, poison: Headers
) -> None:
    """/link reads the raw Request (X-Forwarded-Host among others), and nothing keys the
    override headers: such a request is answered without the cache."""
    app = http_app()
    async with served(app):
        poisoned = await _get(app, "/link", headers=poison)
        victim = await _get(app, "/link")
        again = await _get(app, "/link")
    assert poisoned[0] == b"NO_CACHE"
    assert victim == (b"MISS", {"link": "http://testserver/static/app.js", "n": 2})
    assert again == (b"HIT", victim[1])


async def test_x_forwarded_host_poisoning_fails(http_app: HttpApp) -> None:
    app = http_app()
    evil = [(b"x-forwarded-host", b"evil.example")]
    async with served(app):
        poisoned = await _get(app, "/link", headers=evil)
        victims = [await _get(app, "/link") for _ in range(2)]
        # declared with vary=[...]: keyed, so each host gets its own entry
        varied = [await _get(app, "/link-varied", headers=h) for h in (evil, [], evil, [])]
    assert poisoned[1]["link"] == "http://evil.example/static/app.js"  # the attacker's own
    for _, body in victims:
        assert body["link"] == "http://testserver/static/app.js"
    assert [status for status, _ in varied] == [b"MISS", b"MISS", b"HIT", b"HIT"]
    assert [body["link"] for _, body in varied] == [
        "http://evil.example/static/app.js",
        "http://testserver/static/app.js",
    ] * 2


async def test_forged_host_gets_its_own_entry(http_app: HttpApp) -> None:
    app = http_app()
    async with served(app):
        forged = await _get(app, "/link", headers=[(b"host", b"evil.example")])
        victim = await _get(app, "/link")
    assert forged == (b"MISS", {"link": "http://evil.example/static/app.js", "n": 1})
    assert victim == (b"MISS", {"link": "http://testserver/static/app.js", "n": 2})


async def test_x_original_url_rewrite_never_poisons_the_original_url(http_app: HttpApp) -> None:
    """The app's middleware honours X-Original-URL (rewrites the path): the response is
    keyed by the path the endpoint saw, never by the URL that was sent."""
    app = http_app()
    async with served(app):
        rewritten = await _get(app, "/pages/a", headers=[(b"x-original-url", b"/pages/evil")])
        victim = await _get(app, "/pages/a")
        victim_again = await _get(app, "/pages/a")
        target = await _get(app, "/pages/evil")
    assert rewritten == (b"MISS", {"page": "evil"})
    assert victim == (b"MISS", {"page": "a"})
    assert victim_again == (b"HIT", {"page": "a"})
    assert target == (b"HIT", {"page": "evil"})  # the same response the endpoint gives


# (poisoning request's query, victim's query): sent in this order, the victim's answer must
# be the endpoint's own, and a HIT only when the endpoint answers both alike.
CLOAKING = [
    (b"q=a;q=evil", b"q=a"),  # ";" is not a separator: q is "a;q=evil"
    (b"q=a%26q=evil", b"q=a"),  # "%26" is data: q is "a&q=evil"
    (b"q=a&q=evil", b"q=a"),  # duplicated: FastAPI reads the last, "evil"
    (b"q=evil&q=a", b"q=a"),  # duplicated: the last is "a", the same input
    (b"q=a&utm_source=x;q=evil", b"q=a"),  # hidden in an unkeyed parameter
    (b"q=a&q=evil", b"q=evil"),
    (b"q=a%3Bq%3Devil", b"q=a;q=evil"),  # encoded and raw ";" decode alike
    (b"q=a+b", b"q=a%20b"),
    (b"Q=evil&q=a", b"q=a"),  # names are case-sensitive
    (b"q=a&q", b"q="),
    (b"q=%61", b"q=a"),
]


@pytest.mark.parametrize(("poison", "victim"), CLOAKING)
async def test_parameter_cloaking_never_shares_an_entry(
    http_app: HttpApp, poison: bytes, victim: bytes
) -> None:
    app = http_app()
    async with served(app):
        expected_poison = await _reference(app, "/echo", poison)
        expected_victim = await _reference(app, "/echo", victim)
        first = await _get(app, "/echo", poison)
        second = await _get(app, "/echo", victim)
    assert first == (b"MISS", expected_poison)
    same_input = expected_poison == expected_victim
    assert second == (b"HIT" if same_input else b"MISS", expected_victim)
