"""Bad input: any query string, header or path gives a correct answer, never a 500.

Requests are sent as raw ASGI scopes (bytes exactly as a server could pass them, no client
normalising them). "Correct" is checked against the endpoint itself: for every request, the
answer that the cache gives (MISS, then HIT) equals the endpoint's own answer to the same
request with the cache skipped (Cache-Control: no-cache). Two requests that the endpoint
answers differently therefore never share an entry.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from pydantic_core import PydanticSerializationError

from tests.support.apps import asgi_call, served
from tests.support.fixtures import AppFactory

Answer = tuple[int, dict[bytes, bytes], bytes]


async def call(
    app: FastAPI,
    path: str,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    raw_path: bytes | None = None,
) -> Answer:
    """One GET through the ASGI app; (status, headers, body)."""
    sent_path = quote(path).encode("ascii") if raw_path is None else raw_path
    status, answer_headers, body = await asgi_call(app, "GET", path, headers, query, sent_path)
    return status, dict(answer_headers), body


QUERIES: list[bytes] = [
    b"q=a",
    b"q=a&q=b",  # repeated: FastAPI reads the last
    b"q=b&q=a",
    b"q=a;q=b",  # ";" is not a separator for Starlette: q is "a;q=b"
    b"q=a%26q=b",  # "%26" is a literal "&" inside the value
    b"q=a&q=b%26",
    b"q=%ff%fe",  # not UTF-8 once decoded
    b"q=%C3%A9",
    b"q=%c3%a9",
    b"q=\xc3\xa9",  # raw non-ASCII bytes in the query string
    b"q=\xff",
    b"q=%00",
    b"q=+",
    b"q=%2B",
    b"q=",
    b"q",
    b"Q=a",
    b"%71=a",  # "q" percent-encoded
    b"q=a&&&",
    b"&q=a",
    b"=a",
    b"%",
    b"q=%zz",
    b"tags=a&tags=b",
    b"tags=b&tags=a",  # list order is kept: a different answer
    b"tags=a,b",
    b"tags=a&q=x&tags=b",
    b"tags%5B%5D=a",
    b"q=" + b"x" * 100_000,  # huge
    b"&".join(b"tags=%d" % n for n in range(2_000)),  # many
    b"unknown=1",
    b"q=a&unknown=1",
]

HEADERS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"x-token", b"a")],
    [(b"x-token", b"b")],
    [(b"x-token", b"a"), (b"x-token", b"b")],  # repeated header
    [(b"x-token", b"\xff\xfe")],  # not UTF-8
    [(b"x-token", b"caf\xe9")],
    [(b"x-token", b"")],
    [(b"x-token", b"y" * 20_000)],
    [(b"x_token", b"a")],  # underscore: not the header FastAPI reads
    [(b"x-forwarded-host", b"evil.example")],  # unkeyed and unread: may share
]


async def _check(app: FastAPI, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> str:
    cached = await call(app, path, query, headers)
    uncached = await call(app, path, query, [*headers, (b"cache-control", b"no-cache")])
    assert cached[0] < 500, (query[:80], headers, cached)
    assert uncached[0] == cached[0]
    assert cached[2] == uncached[2], (query[:80], headers)
    return cached[1].get(b"x-cache-status", b"").decode()


async def test_query_strings_and_headers(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app):
        statuses = set()
        for _ in range(2):  # the second round answers from the entries of the first
            for query in QUERIES:
                for headers in HEADERS:
                    statuses.add(await _check(app, "/echo", query, headers))
    assert {"MISS", "HIT"} <= statuses
    assert statuses <= {"MISS", "HIT", "BYPASS"}


async def test_random_query_strings(app_factory: AppFactory) -> None:
    rng = random.Random(20261126)
    names = [b"q", b"tags", b"Q", b"%71", b"t%61gs", b"x", b""]
    values = [b"a", b"b", b"%ff", b"%e2%82%ac", b"+", b"%2B", b"%26", b";", b"", b"\xe9", b"%"]
    separators = [b"&", b"&", b";", b"%26", b"&&"]
    app = app_factory()
    queries = []
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(0, 5)):
            value = b"".join(rng.choice(values) for _ in range(rng.randint(0, 3)))
            parts.append(rng.choice(names) + rng.choice([b"=", b"=", b""]) + value)
            parts.append(rng.choice(separators))
        queries.append(b"".join(parts))
    async with served(app):
        for query in queries + queries:
            await _check(app, "/echo", query, [])


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/names/a", b"/names/a"),
        ("/names/a b", b"/names/a%20b"),
        ("/names/\u00e9", b"/names/%C3%A9"),
        ("/names/\ufffd", b"/names/%ff"),  # a server decodes invalid UTF-8 to U+FFFD
        ("/names/a;b", b"/names/a;b"),
        ("/names/a&b", b"/names/a%26b"),
        ("/names/" + "z" * 50_000, b"/names/" + b"z" * 50_000),
    ],
)
async def test_paths(app_factory: AppFactory, path: str, raw_path: bytes) -> None:
    app = app_factory()
    async with served(app):
        answers = [await call(app, path, raw_path=raw_path) for _ in range(2)]
        uncached = await call(app, path, headers=[(b"cache-control", b"no-cache")])
    assert [a[1][b"x-cache-status"] for a in answers] == [b"MISS", b"HIT"]
    assert answers[0][0] == answers[1][0] == uncached[0] == 200
    assert answers[0][2] == answers[1][2] == uncached[2]


async def test_lone_surrogates_in_the_path_fail_as_without_the_cache(
    app_factory: AppFactory,
) -> None:
    """A non-conforming server may pass lone surrogates: no key can be built, the endpoint
    answers (BYPASS), and FastAPI's own JSON rendering fails exactly as without the cache."""
    app = app_factory()
    async with served(app):
        for headers in ([], [], [(b"cache-control", b"no-cache")]):
            # Pydantic's serializer (FastAPI >= 0.118) or json.dumps(...).encode (older)
            with pytest.raises(
                (PydanticSerializationError, UnicodeEncodeError), match="surrogates not allowed"
            ):
                await call(app, "/names/\udcff", headers=headers, raw_path=b"/names/%ff")
    assert app.state.calls["names"] == 3
