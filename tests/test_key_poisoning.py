"""Web-cache poisoning and parameter cloaking: what enters the key.

A shared cache is poisoned when two requests that the application answers differently share a
key (an attacker's response is then served to everyone), or when something that changes the
response is not in the key. The key here is built from what FastAPI itself hands to the
endpoint, so the tests compare the two: for every pair of requests, the keys are equal
exactly when the endpoint received equal inputs.
"""

import dataclasses
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tests.support.keyprobe import KeyProbe, Probe, assert_key_iff_inputs

pytestmark = pytest.mark.usefixtures("key_kernels")


@dataclasses.dataclass
class Filter:
    d: str | None = None


class QueryModel(BaseModel):
    e: str | None = None
    f: list[str] = []


def nested(g: str | None = None) -> str | None:
    return g


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/search")
    async def search(
        flt: Annotated[Filter, Depends()],
        model: Annotated[QueryModel, Query()],
        g: Annotated[str | None, Depends(nested)],
        a: str | None = None,
        b: Annotated[list[str], Query()] = [],  # noqa: B006
        c: Annotated[str | None, Query(alias="c-c")] = None,
    ) -> Any:
        return {
            "a": a,
            "b": b,
            "c": c,
            "d": flt.d,
            "model": model.model_dump(),
            "g": g,
        }

    @app.get("/items/{item_id}")
    async def item(item_id: str, a: str | None = None) -> Any:
        return {"item_id": item_id, "a": a}

    @app.get("/links/{p:path}")
    async def links(request: Request, p: str) -> Any:
        # What a raw-Request endpoint typically puts in its body: absolute URLs.
        return {
            "url": str(request.url),
            "self": str(request.url_for("links", p=p)),
            "items": request.query_params.multi_items(),
        }

    return app


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return build_app()


@pytest.fixture
def probe(app: FastAPI) -> KeyProbe:
    return KeyProbe(app)


# --- unkeyed headers ---------------------------------------------------------------------

UNKEYED = [
    (b"x-forwarded-host", b"evil.example"),
    (b"x-forwarded-server", b"evil.example"),
    (b"x-host", b"evil.example"),
    (b"x-original-url", b"/admin"),
    (b"x-rewrite-url", b"/admin"),
    (b"x-forwarded-scheme", b"nothttps"),
    (b"x-forwarded-proto", b"nothttps"),
    (b"x-forwarded-prefix", b"/evil"),
    (b"forwarded", b"host=evil.example;proto=https"),
    (b"x-http-method-override", b"POST"),
    (b"user-agent", b"<script>"),
    (b"cookie", b"a=evil"),
]


@pytest.mark.parametrize("header", UNKEYED, ids=[h[0].decode() for h in UNKEYED])
@pytest.mark.parametrize(
    ("path", "query"),
    [("/search", "a=1&b=2"), ("/items/1", "a=1"), ("/links/x", "a=1")],
)
async def test_unkeyed_headers_change_neither_key_nor_response(
    probe: KeyProbe, path: str, query: str, header: tuple[bytes, bytes]
) -> None:
    """Headers the app does not read leave the key alone, and indeed the response too: what
    a poisoner sends in them never reaches a response that others receive."""
    clean = await probe.request(path, query)
    poisoned = await probe.request(path, query, headers=[header])
    assert clean.status == poisoned.status == 200
    assert poisoned.inputs == clean.inputs
    assert poisoned.key == clean.key


async def test_host_header_is_keyed_for_raw_request_readers(probe: KeyProbe) -> None:
    """request.url and url_for() use Host: it is in the key of every raw-Request route."""
    clean = await probe.request("/links/x")
    evil = await probe.request("/links/x", host=b"evil.example")
    assert "evil.example" in evil.inputs["self"]
    assert evil.key != clean.key
    # ...and not in the key of routes that cannot see it.
    assert (await probe.request("/items/1", host=b"evil.example")).key == (
        await probe.request("/items/1")
    ).key


async def test_forwarded_proto_through_a_trusted_proxy_is_keyed() -> None:
    """Behind ProxyHeadersMiddleware, X-Forwarded-Proto becomes the scope's scheme, which a
    raw-Request endpoint renders into its links: the scheme is in its key."""
    app = build_app()
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts="*")
    probe = KeyProbe(app)
    http = await probe.request("/links/x")
    https = await probe.request("/links/x", headers=[(b"x-forwarded-proto", b"https")])
    assert https.inputs["self"].startswith("https://")
    assert http.inputs["self"].startswith("http://")
    assert_key_iff_inputs([http, https])
    items_http = await probe.request("/items/1")
    items_https = await probe.request("/items/1", headers=[(b"x-forwarded-proto", b"https")])
    assert_key_iff_inputs([items_http, items_https])
    assert items_http.key == items_https.key


# --- parameter cloaking ----------------------------------------------------------------------

# (query A, query B, does the endpoint receive the same inputs?)
CLOAKING = [
    ("a=1;a=2", "a=1", False),  # ';' is not a separator: a == "1;a=2"
    ("a=1;a=2", "a=2", False),
    ("utm=x;a=evil", "utm=x", True),  # the Rails-style cloak: a stays absent
    ("utm=x;a=evil", "a=evil", False),
    ("a=1%26a=2", "a=1&a=2", False),  # %26 is data: a == "1&a=2" vs "2"
    ("a=1%26a=2", "a=2", False),
    ("a=1%26b=2", "a=1", False),
    ("utm=1%26a=2", "", True),  # the encoded '&' hides nothing
    ("a=1&a=2", "a=2", True),  # FastAPI reads the last value of a scalar
    ("a=2&a=1", "a=2", False),
    ("a=1&utm=x&a=2", "a=2", True),
    ("b=1&b=2", "b=2&b=1", False),  # lists keep their order
    ("b=1&b=2", "b=1,2", False),
    ("b=1&a=1&b=2", "a=1&b=1&b=2", True),
    ("a=", "", False),  # empty is not absent
    ("a", "a=", True),
    ("a=+", "a=%20", True),
    ("a=%FF", "a=%EF%BF%BD", True),  # both decode to U+FFFD
    ("%61=1", "a=1", True),
    ("A=1", "a=1", False),
    ("c_c=1", "", True),  # the alias is c-c
    ("c-c=1", "c_c=1", False),
    ("a%3D1", "a=1", False),  # an encoded '=' is part of the name
    ("a=1&&&", "a=1", True),
    ("e=1", "e=1&f=", False),
    ("d=1&g=2", "g=2&d=1", True),
    ("d=x%00", "d=x", False),
]


@pytest.mark.parametrize(("qa", "qb", "same"), CLOAKING)
async def test_parameter_cloaking(probe: KeyProbe, qa: str, qb: str, same: bool) -> None:
    a = await probe.request("/search", qa)
    b = await probe.request("/search", qb)
    assert (a.inputs == b.inputs) is same, (a.inputs, b.inputs)
    assert_key_iff_inputs([a, b])


@pytest.mark.parametrize(
    ("qa", "qb"),
    [("a=+", "a=%20"), ("a=%FF", "a=%EF%BF%BD"), ("%61=1", "a=1"), ("a", "a=")],
)
async def test_raw_readers_see_the_encoding(probe: KeyProbe, qa: str, qb: str) -> None:
    """What decodes equal is still a different URL for an endpoint that renders request.url."""
    a = await probe.request("/links/x", qa)
    b = await probe.request("/links/x", qb)
    assert a.inputs["url"] != b.inputs["url"]
    assert_key_iff_inputs([a, b])


async def test_original_url_header_does_not_reroute(probe: KeyProbe) -> None:
    one = await probe.request("/items/1")
    spoofed = await probe.request("/items/1", headers=[(b"x-original-url", b"/items/2")])
    two = await probe.request("/items/2")
    assert spoofed.inputs == one.inputs == {"item_id": "1", "a": None}
    assert spoofed.key == one.key != two.key


# --- hypothesis: equal keys iff equal inputs -----------------------------------------------

NAMES = ["a", "b", "c-c", "c_c", "d", "e", "f", "g", "A", "%61", "b%5B%5D", "utm", ""]
VALUES = [
    "",
    "1",
    "2",
    "x;a=3",
    "1%262",
    "%26",
    "+",
    "%20",
    "%FF",
    "%EF%BF%BD",
    "\xc3\xa9",
    "%C3%A9",
    "a,b",
    "%",
    "=",
    "%00",
]


@st.composite
def items(draw: st.DrawFn) -> list[str]:
    pairs = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=6))
    return [f"{n}={v}" if draw(st.booleans()) or v else n for n, v in pairs]


@st.composite
def query_family(draw: st.DrawFn) -> list[str]:
    """A base query string and variants: some change what the endpoint reads, some do not."""
    base = draw(items())
    family = ["&".join(base)]
    for _ in range(draw(st.integers(1, 4))):
        parts = list(base)
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(["noise", "dup", "swap", "semicolon", "change", "drop"]))
            at = draw(st.integers(0, len(parts)))
            if op == "noise":
                parts.insert(at, draw(st.sampled_from(["utm=1", "c_c=9", "b%5B%5D=1", "x"])))
            elif op == "dup":  # an earlier value of a scalar: FastAPI reads the last one
                parts.insert(0, f"{draw(st.sampled_from(['a', 'd', 'e', 'g']))}=dup")
            elif op == "swap" and len(parts) >= 2:
                i = draw(st.integers(0, len(parts) - 2))
                parts[i], parts[i + 1] = parts[i + 1], parts[i]
            elif op == "semicolon" and len(parts) >= 2:
                i = draw(st.integers(0, len(parts) - 2))
                parts[i : i + 2] = [parts[i] + ";" + parts[i + 1]]
            elif op == "change" and parts:
                parts[min(at, len(parts) - 1)] = draw(items().filter(bool))[0]
            elif op == "drop" and parts:
                del parts[min(at, len(parts) - 1)]
        family.append("&".join(parts))
    return family


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(family=query_family())
def test_keys_equal_iff_inputs_equal(probe: KeyProbe, family: list[str]) -> None:
    probes: list[Probe] = [probe.run("/search", q) for q in family]
    assert_key_iff_inputs(probes)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(family=query_family())
def test_raw_reader_keys_equal_iff_inputs_equal(probe: KeyProbe, family: list[str]) -> None:
    probes: list[Probe] = [probe.run("/links/x", q) for q in family]
    assert_key_iff_inputs(probes)


async def test_per_user_keys_by_varying_on_authorization(app: FastAPI) -> None:
    """vary=["Authorization"] gives each credential its own entry. Without it, Authorization
    is not in the key (the keyer says so), and the caching policy must not store or serve
    such requests (tests/test_storable_responses.py)."""
    plain = KeyProbe(app)
    assert "authorization" not in plain.keyer("/search").header_names
    per_user = KeyProbe(app, vary=["Authorization"])
    assert "authorization" in per_user.keyer("/search").header_names
    alice = await per_user.request("/search", "a=1", headers=[(b"authorization", b"Bearer a")])
    bob = await per_user.request("/search", "a=1", headers=[(b"authorization", b"Bearer b")])
    alice2 = await per_user.request("/search", "a=1", headers=[(b"authorization", b"Bearer a")])
    anonymous = await per_user.request("/search", "a=1")
    assert len({alice.key, bob.key, anonymous.key}) == 3
    assert alice.key == alice2.key
