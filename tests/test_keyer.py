"""What enters a cache key: every way a FastAPI endpoint can declare a request input.

Each endpoint echoes its inputs; the tests drive real requests through the app and assert
that the key changes exactly when the endpoint's inputs change.
"""

import dataclasses
import functools
import inspect
import re
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Cookie, Depends, FastAPI, Header, Query, Request
from fastapi.routing import APIRoute
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    APIKeyQuery,
    HTTPBearer,
    OAuth2PasswordBearer,
)
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from starlette.requests import Request as StarletteRequest

from fastapi_cachemate._route.keyer import (
    RouteKeyer,
    UnkeyableRequestError,
    check_endpoint,
    effective_route,
    parse_vary,
    request_unkeyed,
)
from tests.support.keyprobe import KeyProbe, Probe, assert_key_iff_inputs

pytestmark = pytest.mark.usefixtures("key_kernels")

# --- filters in every form the seed README and FastAPI allow ---------------------------


class PydFilter(BaseModel):
    name: str | None = None
    min_price: str | None = Field(None, alias="minPrice")


@dataclasses.dataclass
class DataFilter:
    name: str | None = None
    page: str = "1"


class PlainFilter:
    def __init__(self, name: str | None = None, page: str = "1") -> None:
        self.name = name
        self.page = page


class QueryModel(BaseModel):
    q: str | None = Field(None, alias="qq")
    tags: list[str] = []


class HeaderModel(BaseModel):
    x_trace_id: str | None = None
    accept_ids: list[str] = []


class CookieModel(BaseModel):
    theme: str | None = None


def inner_dep(depth: Annotated[str | None, Query(alias="deep-depth")] = None) -> str | None:
    return depth


def outer_dep(limit: str = "10", deep: str | None = Depends(inner_dep)) -> dict[str, str | None]:
    return {"limit": limit, "deep": deep}


class FakeSession:
    """A db-session-like dependency: no request input at all."""

    opened = 0


def get_session() -> Iterator[FakeSession]:
    FakeSession.opened += 1
    yield FakeSession()


def dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__dict__"):
        return dict(vars(value))
    return value


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/plain")
    async def plain(a: str | None = None, n: int = 0) -> Any:
        return {"a": a, "n": n}

    @app.get("/alias")
    async def alias(item_query: Annotated[str | None, Query(alias="item-query")] = None) -> Any:
        return {"item_query": item_query}

    @app.get("/choices")
    async def choices(
        v: Annotated[str | None, Query(validation_alias=AliasChoices("v", "version"))] = None,
    ) -> Any:
        return {"v": v}

    @app.get("/list")
    async def list_param(t: Annotated[list[str], Query()] = []) -> Any:  # noqa: B006
        return {"t": t}

    @app.get("/pyd-annotated")
    async def pyd_annotated(f: Annotated[PydFilter, Depends()]) -> Any:
        return dump(f)

    @app.get("/pyd-default")
    async def pyd_default(f: PydFilter = Depends()) -> Any:  # noqa: B008
        return dump(f)

    @app.get("/data-annotated")
    async def data_annotated(f: Annotated[DataFilter, Depends()]) -> Any:
        return dump(f)

    @app.get("/data-default")
    async def data_default(f: DataFilter = Depends()) -> Any:  # noqa: B008
        return dump(f)

    @app.get("/plain-annotated")
    async def plain_annotated(f: Annotated[PlainFilter, Depends()]) -> Any:
        return dump(f)

    @app.get("/plain-default")
    async def plain_default(f: PlainFilter = Depends()) -> Any:  # noqa: B008
        return dump(f)

    @app.get("/query-model")
    async def query_model(m: Annotated[QueryModel, Query()]) -> Any:
        return dump(m)

    @app.get("/nested")
    async def nested(o: Annotated[dict[str, Any], Depends(outer_dep)]) -> Any:
        return o

    @app.get("/session")
    async def session(s: Annotated[FakeSession, Depends(get_session)], a: str = "") -> Any:
        return {"a": a}

    @app.get("/headers")
    async def headers(
        x_token: Annotated[str | None, Header()] = None,
        raw_name: Annotated[str | None, Header(convert_underscores=False)] = None,
    ) -> Any:
        return {"x_token": x_token, "raw_name": raw_name}

    @app.get("/header-model")
    async def header_model(h: Annotated[HeaderModel, Header()]) -> Any:
        return dump(h)

    @app.get("/cookies")
    async def cookies(sess: Annotated[str | None, Cookie()] = None) -> Any:
        return {"sess": sess}

    @app.get("/cookie-model")
    async def cookie_model(c: Annotated[CookieModel, Cookie()]) -> Any:
        return dump(c)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> Any:
        return {"item_id": item_id}

    @app.get("/files/{p:path}")
    async def files(p: str) -> Any:
        return {"p": p}

    @app.get("/raw/{p:path}")
    async def raw(request: Request, p: str) -> Any:
        return {"url": str(request.url), "items": request.query_params.multi_items()}

    return app


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return build_app()


@pytest.fixture
def probe(app: FastAPI) -> KeyProbe:
    return KeyProbe(app)


async def get(probe: KeyProbe, path: str, query: str = "", **kw: Any) -> Probe:
    result = await probe.request(path, query, **kw)
    assert result.status == 200, result.body
    return result


# --- the seed's collisions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/pyd-annotated", "/pyd-default", "/data-annotated", "/data-default", "/plain-annotated"],
)
async def test_filters_declared_with_depends_are_keyed(probe: KeyProbe, path: str) -> None:
    """The seed gives ?name=a and ?name=b one key for Annotated[F, Depends()] filters."""
    a = await get(probe, path, "name=a")
    b = await get(probe, path, "name=b")
    none = await get(probe, path)
    assert a.inputs["name"] == "a"
    assert b.inputs["name"] == "b"
    assert len({a.key, b.key, none.key}) == 3


async def test_colon_and_slash_paths_have_different_keys(probe: KeyProbe) -> None:
    """The seed maps '/' to ':' in its keys, so /a:b and /a/b collide there."""
    colon = await get(probe, "/files/a:b")
    slash = await get(probe, "/files/a/b")
    assert colon.inputs == {"p": "a:b"}
    assert slash.inputs == {"p": "a/b"}
    assert colon.key != slash.key


async def test_path_params_are_keyed(probe: KeyProbe) -> None:
    one = await get(probe, "/items/1")
    two = await get(probe, "/items/2")
    again = await get(probe, "/items/1")
    assert one.key != two.key
    assert one.key == again.key


# --- every declaration form enters the key, undeclared params do not --------------------

FORMS = [
    ("/plain", "a"),
    ("/alias", "item-query"),
    ("/choices", "v"),
    ("/choices", "version"),
    ("/list", "t"),
    ("/pyd-annotated", "name"),
    ("/pyd-annotated", "minPrice"),
    ("/pyd-default", "minPrice"),
    ("/data-annotated", "page"),
    ("/data-default", "page"),
    ("/plain-annotated", "page"),
    ("/plain-default", "page"),
    ("/query-model", "qq"),
    ("/query-model", "tags"),
    ("/nested", "limit"),
    ("/nested", "deep-depth"),
]


@pytest.mark.parametrize(("path", "name"), FORMS)
async def test_declared_param_enters_key(probe: KeyProbe, path: str, name: str) -> None:
    base = await get(probe, path)
    one = await get(probe, path, f"{name}=7")
    two = await get(probe, path, f"{name}=8")
    assert base.inputs != one.inputs != two.inputs != base.inputs
    assert len({base.key, one.key, two.key}) == 3
    assert name in (probe.keyer(path).query_names or ())


@pytest.mark.parametrize("path", sorted({p for p, _ in FORMS} | {"/session"}))
async def test_undeclared_params_do_not_enter_key(probe: KeyProbe, path: str) -> None:
    base = await get(probe, path)
    noise = await get(probe, path, "utm_source=x&fbclid=1&_=123&cb=%FF")
    assert noise.inputs == base.inputs
    assert noise.key == base.key


async def test_alias_is_the_url_name(probe: KeyProbe) -> None:
    """FastAPI reads ?item-query=, never ?item_query= for an aliased parameter."""
    base = await get(probe, "/alias")
    python_name = await get(probe, "/alias", "item_query=x")
    url_name = await get(probe, "/alias", "item-query=x")
    assert python_name.inputs == base.inputs
    assert python_name.key == base.key
    assert url_name.inputs == {"item_query": "x"}
    assert url_name.key != base.key
    assert probe.keyer("/alias").query_names == ("item-query",)


async def test_pydantic_filter_field_alias(probe: KeyProbe) -> None:
    keyer = probe.keyer("/pyd-annotated")
    assert keyer.query_names == ("minPrice", "name")


async def test_list_params_keep_order(probe: KeyProbe) -> None:
    ab = await get(probe, "/list", "t=a&t=b")
    ba = await get(probe, "/list", "t=b&t=a")
    a = await get(probe, "/list", "t=a")
    assert ab.inputs == {"t": ["a", "b"]}
    assert ba.inputs == {"t": ["b", "a"]}
    assert len({ab.key, ba.key, a.key}) == 3


async def test_query_model_list_field_keeps_order(probe: KeyProbe) -> None:
    ab = await get(probe, "/query-model", "tags=a&tags=b")
    ba = await get(probe, "/query-model", "tags=b&tags=a")
    assert ab.inputs["tags"] == ["a", "b"]
    assert ab.key != ba.key


async def test_repeated_scalar_is_keyed_on_the_value_fastapi_reads(probe: KeyProbe) -> None:
    """FastAPI reads the last value of a repeated scalar parameter; the key does too."""
    twice = await get(probe, "/plain", "a=1&a=2")
    last = await get(probe, "/plain", "a=2")
    first = await get(probe, "/plain", "a=1")
    assert twice.inputs == last.inputs == {"a": "2", "n": 0}
    assert twice.key == last.key
    assert twice.key != first.key
    assert_key_iff_inputs([twice, last, first])


async def test_nested_function_dependencies(probe: KeyProbe) -> None:
    assert probe.keyer("/nested").query_names == ("deep-depth", "limit")
    deep = await get(probe, "/nested", "deep-depth=3")
    assert deep.inputs == {"limit": "10", "deep": "3"}


async def test_db_session_dependency_never_enters_key(probe: KeyProbe) -> None:
    keyer = probe.keyer("/session")
    assert keyer.query_names == ("a",)
    assert keyer.header_names == ()
    assert keyer.cookie_names == ()
    assert not keyer.reads_request
    before = FakeSession.opened
    first = await get(probe, "/session", "a=1")
    second = await get(probe, "/session", "a=1")
    assert FakeSession.opened == before + 2  # a new session per request...
    assert first.key == second.key  # ...and one key


# --- headers and cookies ------------------------------------------------------------------


async def test_header_params_by_the_name_fastapi_reads(probe: KeyProbe) -> None:
    keyer = probe.keyer("/headers")
    assert keyer.header_names == ("raw_name", "x-token")
    base = await get(probe, "/headers")
    token = await get(probe, "/headers", headers=[(b"x-token", b"t1")])
    token2 = await get(probe, "/headers", headers=[(b"x-token", b"t2")])
    underscored = await get(probe, "/headers", headers=[(b"x_token", b"t1")])
    raw_name = await get(probe, "/headers", headers=[(b"raw_name", b"r")])
    raw_hyphen = await get(probe, "/headers", headers=[(b"raw-name", b"r")])
    assert token.inputs == {"x_token": "t1", "raw_name": None}
    assert underscored.inputs == base.inputs
    assert raw_hyphen.inputs == base.inputs
    assert raw_name.inputs == {"x_token": None, "raw_name": "r"}
    assert_key_iff_inputs([base, token, token2, underscored, raw_name, raw_hyphen])


async def test_header_model_fields(probe: KeyProbe) -> None:
    keyer = probe.keyer("/header-model")
    assert keyer.header_names == ("accept-ids", "x-trace-id")
    base = await get(probe, "/header-model")
    trace = await get(probe, "/header-model", headers=[(b"x-trace-id", b"1")])
    other = await get(probe, "/header-model", headers=[(b"user-agent", b"x")])
    assert trace.inputs["x_trace_id"] == "1"
    assert_key_iff_inputs([base, trace, other])


async def test_cookie_params(probe: KeyProbe) -> None:
    assert probe.keyer("/cookies").cookie_names == ("sess",)
    base = await get(probe, "/cookies")
    one = await get(probe, "/cookies", headers=[(b"cookie", b"sess=1; other=x")])
    two = await get(probe, "/cookies", headers=[(b"cookie", b"other=y; sess=2")])
    other = await get(probe, "/cookies", headers=[(b"cookie", b"other=z")])
    empty = await get(probe, "/cookies", headers=[(b"cookie", b"sess=")])
    assert one.inputs == {"sess": "1"}
    assert empty.inputs == {"sess": ""}
    assert_key_iff_inputs([base, one, two, other, empty])


async def test_cookie_model(probe: KeyProbe) -> None:
    assert probe.keyer("/cookie-model").cookie_names == ("theme",)
    dark = await get(probe, "/cookie-model", headers=[(b"cookie", b"theme=dark")])
    light = await get(probe, "/cookie-model", headers=[(b"cookie", b"theme=light; x=1")])
    light2 = await get(probe, "/cookie-model", headers=[(b"cookie", b"x=2; theme=light")])
    assert_key_iff_inputs([dark, light, light2])


# --- vary ------------------------------------------------------------------------------------


async def test_vary_headers_and_cookies(app: FastAPI) -> None:
    probe = KeyProbe(app, vary=["Accept-Language", "cookie:sid"])
    keyer = probe.keyer("/plain")
    assert keyer.header_names == ("accept-language",)
    assert keyer.cookie_names == ("sid",)
    en = await get(probe, "/plain", headers=[(b"accept-language", b"en")])
    fr = await get(probe, "/plain", headers=[(b"accept-language", b"fr")])
    en2 = await get(probe, "/plain", headers=[(b"accept-language", b"en"), (b"x-other", b"1")])
    sid1 = await get(probe, "/plain", headers=[(b"cookie", b"sid=1")])
    sid2 = await get(probe, "/plain", headers=[(b"cookie", b"sid=2")])
    assert en.key == en2.key
    assert len({en.key, fr.key, sid1.key, sid2.key}) == 4


def test_parse_vary() -> None:
    assert parse_vary(["Accept-Language", "authorization", "Cookie:SID", "cookie: b"]) == (
        ("accept-language", "authorization"),
        ("SID", "b"),
    )
    for bad in (["*"], ["bad header"], ["x:y"], ["cookie:"], ["cookie:a;b"]):
        with pytest.raises(ValueError, match="vary"):
            parse_vary(bad)
    with pytest.raises(TypeError):
        parse_vary("Accept-Language")


# --- the raw request -------------------------------------------------------------------------


async def test_raw_request_reader_keys_raw_path_and_every_item(probe: KeyProbe) -> None:
    keyer = probe.keyer("/raw/{p:path}")
    assert keyer.reads_request
    assert keyer.query_names is None
    assert "host" in keyer.header_names
    encoded = await get(probe, "/raw/a/b", raw_path=b"/raw/a%2Fb")
    plain = await get(probe, "/raw/a/b", raw_path=b"/raw/a/b")
    noise = await get(probe, "/raw/a/b", "utm=1", raw_path=b"/raw/a/b")
    reordered_1 = await get(probe, "/raw/x", "a=1&b=2")
    reordered_2 = await get(probe, "/raw/x", "b=2&a=1")
    assert len({encoded.key, plain.key, noise.key}) == 3
    assert reordered_1.key != reordered_2.key
    other_host = await get(probe, "/raw/x", "a=1&b=2", host=b"evil.example")
    assert other_host.inputs != reordered_1.inputs
    assert other_host.key != reordered_1.key


async def test_decoded_path_is_what_path_params_see(probe: KeyProbe) -> None:
    """Without the raw Request, /files/a%2Fb and /files/a/b give the endpoint the same p."""
    encoded = await get(probe, "/files/a/b", raw_path=b"/files/a%2Fb")
    plain = await get(probe, "/files/a/b", raw_path=b"/files/a/b")
    assert encoded.inputs == plain.inputs == {"p": "a/b"}
    assert encoded.key == plain.key


async def test_head_shares_the_get_key_unless_raw() -> None:
    app = FastAPI()

    @app.api_route("/h", methods=["GET", "HEAD"])
    async def h(a: str = "") -> Any:
        return {"a": a}

    @app.api_route("/hr", methods=["GET", "HEAD"])
    async def hr(request: Request) -> Any:
        return {"m": request.method}

    probe = KeyProbe(app)
    get_ = await probe.request("/h", "a=1")
    head = await probe.request("/h", "a=1", method="HEAD")
    assert get_.key == head.key
    get_raw = await probe.request("/hr")
    head_raw = await probe.request("/hr", method="HEAD")
    assert get_raw.key != head_raw.key


def _add_request(func: Any) -> Any:
    """A decorator that adds a Request parameter of its own, as a cache decorator does."""

    @functools.wraps(func)
    async def wrapper(*args: Any, __cm_request: Request, **kwargs: Any) -> Any:
        return await func(*args, **kwargs)

    sig = inspect.signature(func)
    extra = inspect.Parameter("__cm_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])  # type: ignore[attr-defined]
    return wrapper


async def test_request_added_by_a_wrapping_decorator_is_not_a_read() -> None:
    app = FastAPI()

    @app.get("/w")
    @_add_request
    async def w(a: str = "") -> Any:
        return {"a": a}

    @app.get("/w-own")
    @_add_request
    async def w_own(request: Request, a: str = "") -> Any:
        return {"a": a}

    probe = KeyProbe(app)
    assert not probe.keyer("/w").reads_request
    assert probe.keyer("/w").query_names == ("a",)
    assert probe.keyer("/w-own").reads_request
    one = await probe.request("/w", "a=1&utm=2")
    two = await probe.request("/w", "a=1")
    assert one.key == two.key


async def test_injected_names_for_a_wrapper_without_wrapped() -> None:
    async def endpoint(a: str = "", cm_req: Request | None = None) -> Any:
        return {"a": a}

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("a", inspect.Parameter.KEYWORD_ONLY, default=""),
            inspect.Parameter("cm_req", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        ]
    )
    app = FastAPI()
    app.get("/i")(endpoint)
    assert KeyProbe(app).keyer("/i").reads_request
    probe = KeyProbe(app, injected=["cm_req"])
    assert not probe.keyer("/i").reads_request
    assert probe.keyer("/i").query_names == ("a",)


# --- security schemes: what they read is known ---------------------------------------------


async def test_security_schemes_enter_the_key() -> None:
    app = FastAPI()
    oauth = OAuth2PasswordBearer(tokenUrl="token")
    bearer = HTTPBearer()
    key_header = APIKeyHeader(name="X-API-Key")
    key_query = APIKeyQuery(name="api_key")
    key_cookie = APIKeyCookie(name="session")

    @app.get("/oauth")
    async def oauth_ep(token: Annotated[str, Depends(oauth)]) -> Any:
        return {"token": token}

    @app.get("/bearer")
    async def bearer_ep(cred: Any = Depends(bearer)) -> Any:  # noqa: B008
        return {"token": cred.credentials}

    @app.get("/apikey")
    async def apikey_ep(
        h: Annotated[str, Depends(key_header)],
        q: Annotated[str, Depends(key_query)],
        c: Annotated[str, Depends(key_cookie)],
    ) -> Any:
        return {"h": h, "q": q, "c": c}

    probe = KeyProbe(app)
    for path in ("/oauth", "/bearer"):
        keyer = probe.keyer(path)
        assert keyer.header_names == ("authorization",)
        assert not keyer.reads_request
        alice = await get(probe, path, headers=[(b"authorization", b"Bearer alice")])
        bob = await get(probe, path, headers=[(b"authorization", b"Bearer bob")])
        assert alice.inputs != bob.inputs
        assert alice.key != bob.key
    keyer = probe.keyer("/apikey")
    assert (keyer.query_names, keyer.header_names, keyer.cookie_names) == (
        ("api_key",),
        ("x-api-key",),
        ("session",),
    )
    base = [(b"x-api-key", b"k1"), (b"cookie", b"session=s1")]
    one = await get(probe, "/apikey", "api_key=q1", headers=base)
    two = await get(probe, "/apikey", "api_key=q2", headers=base)
    three = await get(probe, "/apikey", "api_key=q1", headers=[(b"x-api-key", b"k2"), base[1]])
    four = await get(probe, "/apikey", "api_key=q1", headers=[base[0], (b"cookie", b"session=2")])
    assert_key_iff_inputs([one, two, three, four])


def test_a_security_subclass_with_its_own_call_reads_the_request() -> None:
    class Custom(APIKeyHeader):
        async def __call__(self, request: StarletteRequest) -> str | None:  # type: ignore[override]
            return request.headers.get("x-whatever")

    app = FastAPI()

    @app.get("/c")
    async def c(v: Annotated[str | None, Depends(Custom(name="k"))]) -> Any:
        return v

    assert KeyProbe(app).keyer("/c").reads_request


# --- models whose extra policy widens the inputs ---------------------------------------------


class OpenQuery(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: str | None = None


class OpenHeaders(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: str | None = None


class OpenCookies(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: str | None = None


async def test_query_model_with_extra_allow_keys_every_item() -> None:
    app = FastAPI()

    @app.get("/open")
    async def open_(m: Annotated[OpenQuery, Query()]) -> Any:
        return m.model_dump()

    @app.get("/open-mixed")
    async def open_mixed(m: Annotated[OpenQuery, Query()], b: str | None = None) -> Any:
        return {"m": m.model_dump(), "b": b}

    probe = KeyProbe(app)
    assert probe.keyer("/open").query_names is None
    base = await get(probe, "/open", "a=1")
    extra = await get(probe, "/open", "a=1&zzz=2")
    assert extra.inputs == {"a": "1", "zzz": "2"}
    assert_key_iff_inputs([base, extra])
    # b is a scalar parameter (FastAPI reads its last value) and an extra of the model
    # (every value): ?b=1&b=2 and ?b=2 are different inputs.
    twice = await get(probe, "/open-mixed", "b=1&b=2")
    once = await get(probe, "/open-mixed", "b=2")
    assert twice.inputs != once.inputs
    assert twice.key != once.key


def test_header_and_cookie_models_with_extra_allow_are_refused() -> None:
    async def h(m: Annotated[OpenHeaders, Header()]) -> Any:
        return m

    async def c(m: Annotated[OpenCookies, Cookie()]) -> Any:
        return m

    with pytest.raises(ValueError, match=r"OpenHeaders.*extra='allow'"):
        check_endpoint(h)
    with pytest.raises(ValueError, match=r"OpenCookies.*extra='allow'"):
        check_endpoint(c)


# --- check_endpoint ---------------------------------------------------------------------------


class NoInitFilter:
    name: str | None = None
    page: int = 1


class NoInitService:
    """No attributes: a plain injected object, not a filter."""


def test_check_endpoint_refuses_a_plain_class_without_init() -> None:
    async def annotated(f: Annotated[NoInitFilter, Depends()]) -> Any:
        return f

    async def default(flt: NoInitFilter = Depends()) -> Any:  # noqa: B008
        return flt

    def nested_dep(inner: Annotated[NoInitFilter, Depends()]) -> Any:
        return inner

    async def nested(x: Annotated[Any, Depends(nested_dep)]) -> Any:
        return x

    with pytest.raises(TypeError, match=r"parameter 'f'.*NoInitFilter.*name, page"):
        check_endpoint(annotated)
    with pytest.raises(TypeError, match=r"parameter 'flt'.*NoInitFilter"):
        check_endpoint(default)
    with pytest.raises(TypeError, match=r"parameter 'x' -> parameter 'inner'.*NoInitFilter"):
        check_endpoint(nested)


def test_check_endpoint_accepts_every_supported_form() -> None:
    async def ok(
        a: Annotated[PydFilter, Depends()],
        b: Annotated[DataFilter, Depends()],
        c: Annotated[PlainFilter, Depends()],
        d: Annotated[QueryModel, Query()],
        e: Annotated[HeaderModel, Header()],
        s: Annotated[NoInitService, Depends()],
        o: Annotated[Any, Depends(outer_dep)],
        request: Request,
    ) -> Any:
        return None

    assert check_endpoint(ok) is None
    for route in build_app().routes:
        if isinstance(route, APIRoute):
            assert check_endpoint(route.endpoint) is None


# --- key layout, key_for, bad input --------------------------------------------------------


async def test_key_layout(probe: KeyProbe) -> None:
    result = await get(probe, "/plain", "a=1")
    assert re.fullmatch(rb"t:\{[0-9a-f]{32}\}", result.key)
    assert len(result.fingerprint) == 8
    other_prefix = KeyProbe(probe.app, prefix="other")
    assert (await get(other_prefix, "/plain", "a=1")).key.startswith(b"other:{")


def test_prefix_with_braces_is_refused() -> None:
    route = next(r for r in build_app().routes if isinstance(r, APIRoute))
    with pytest.raises(ValueError, match="prefix"):
        RouteKeyer.for_route(route, prefix="app{1}")


async def test_routes_with_the_same_inputs_have_different_keys(probe: KeyProbe) -> None:
    a = await get(probe, "/pyd-annotated", "name=x")
    b = await get(probe, "/pyd-default", "name=x")
    assert a.inputs == b.inputs
    assert a.key != b.key


@pytest.mark.parametrize(
    ("path", "query", "headers"),
    [
        ("/plain", "a=1&a=2&n=3&utm=x", []),
        ("/list", "t=b&t=a", []),
        ("/query-model", "qq=1&tags=x&tags=y", []),
        ("/headers", "", [(b"x-token", b"abc")]),
        ("/cookies", "", [(b"cookie", b"sess=1")]),
        ("/raw/a b/c:d", "x=1&y=%C3%A9+z", []),
    ],
)
async def test_key_for_matches_the_request_key(
    probe: KeyProbe, path: str, query: str, headers: list[tuple[bytes, bytes]]
) -> None:
    template = "/raw/{p:path}" if path.startswith("/raw") else path
    keyer = probe.keyer(template)
    result = await get(probe, path, query, headers=headers)
    req = StarletteRequest(result.scope)
    all_headers = [(b"Host", b"testserver"), *[(n.upper(), v) for n, v in headers]]
    expected = keyer.key_for(
        path=path,
        query=req.query_params.multi_items(),
        headers=all_headers,
        cookies=req.cookies,
    )
    assert expected == (result.key, result.fingerprint)
    assert (
        keyer.key_for(
            path=path + "x",
            query=req.query_params.multi_items(),
            headers=all_headers,
            cookies=req.cookies,
        )
        != expected
    )


BAD_QUERIES = [
    b"a=%FF%FE&n=1",
    b"a=\xff\xfe\x00",
    b"a=1;a=2",
    b"a=1%26a=2",
    b"%zz=%&a=%%",
    b"a" * 100_000,
    b"&".join(b"a=%d" % i for i in range(20_000)),
    b"t=" + b"x" * 1_000_000,
    b"==&&;;=",
    b"a=\x00\x01\x7f",
]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=range(len(BAD_QUERIES)))
@pytest.mark.parametrize("path", ["/plain", "/list", "/raw/{p:path}"])
def test_any_query_gives_a_key(probe: KeyProbe, path: str, query: bytes) -> None:
    keyer = probe.keyer(path)
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/raw/\udcff\x00é" if path.startswith("/raw") else path,
        "raw_path": b"/raw/%FF%00\xc3\xa9",
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"\xff"), (b"cookie", b"\xff=\xfe; sess=\x00")],
    }
    key, fingerprint = keyer.key(StarletteRequest(scope))
    assert key.startswith(b"t:{")
    assert len(fingerprint) == 8


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/headers", {"headers": [("x-token", "not bytes")]}),
        ("/headers", {"headers": None}),
        ("/plain", {"method": None}),
        ("/raw/{p:path}", {"raw_path": "/raw/str"}),
        ("/plain", {"path": None}),
    ],
)
def test_a_malformed_scope_raises_the_one_documented_error(
    probe: KeyProbe, path: str, scope: dict[str, Any]
) -> None:
    keyer = probe.keyer(path)
    full = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "headers": [],
        **scope,
    }
    with pytest.raises(UnkeyableRequestError):
        keyer.key(StarletteRequest(full))


def test_key_kernels_fixture_swaps_the_builder(request: pytest.FixtureRequest) -> None:
    from fastapi_cachemate._route import keyer

    assert keyer.kernels is request.getfixturevalue("key_kernels")


# --- through a real HTTP client --------------------------------------------------------------


class ScopeRecorder:
    """ASGI middleware that keeps the scope of each request (routing fills in "route")."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.scopes.append(scope)
        await self.app(scope, receive, send)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/plain", [("a", "x y"), ("n", "3"), ("utm", "1")]),
        ("/list", [("t", "é&=+"), ("t", "~!*()")]),
        ("/files/a b/c:d/é", []),
        ("/raw/a b/c:d/é", [("x", "a b"), ("y", "é&=+"), ("z", "~!*()")]),
    ],
)
async def test_key_for_matches_what_an_http_client_sends(
    app: FastAPI, path: str, params: list[tuple[str, str]]
) -> None:
    """key_for (invalidation by parameters) gives the key of a request that httpx sends."""
    import httpx

    recorder = ScopeRecorder(app)
    transport = httpx.ASGITransport(app=recorder)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(path, params=params)
        again = await client.get(path, params=params, headers={"x-forwarded-host": "evil"})
    assert response.status_code == again.status_code == 200
    assert response.content == again.content
    first, second = recorder.scopes
    keyer = RouteKeyer.for_route(first["route"], prefix="t")
    key = keyer.key(StarletteRequest(first))
    assert key == keyer.key(StarletteRequest(second))
    assert key == keyer.key_for(path=path, query=params, headers=[(b"host", b"testserver")])


async def test_app_include_router_and_route_dependencies_enter_the_key() -> None:
    """dependencies=[...] on the app, on include_router, on the router and on the route can
    answer 4xx by their own parameters: what they read is keyed like the endpoint's own.
    FastAPI 0.165 leaves the app- and include-level ones out of scope["route"]."""
    from fastapi import APIRouter, HTTPException

    def app_level(zone: str | None = None) -> None:
        if zone == "blocked":
            raise HTTPException(403)

    def include_level(region: str | None = None) -> None:
        return None

    def router_level(x_tenant: Annotated[str | None, Header()] = None) -> None:
        return None

    def route_level(version: Annotated[str, Query(alias="v")] = "1") -> None:
        return None

    app = FastAPI(dependencies=[Depends(app_level)])
    router = APIRouter(prefix="/p", dependencies=[Depends(router_level)])

    @router.get("/r", dependencies=[Depends(route_level)])
    async def r(a: str = "") -> Any:
        return {"a": a}

    app.include_router(router, prefix="/x", dependencies=[Depends(include_level)])
    app.include_router(router, prefix="/y")
    probe = KeyProbe(app)
    x = await get(probe, "/x/p/r")
    y = await get(probe, "/y/p/r")
    keyer_x = probe.keyer_of_scope(x.scope)
    assert keyer_x.query_names == ("a", "region", "v", "zone")
    assert keyer_x.header_names == ("x-tenant",)
    assert probe.keyer_of_scope(y.scope).query_names == ("a", "v", "zone")
    assert (await get(probe, "/x/p/r", "region=eu")).key != x.key
    assert (await get(probe, "/x/p/r", "zone=z")).key != x.key
    assert (await get(probe, "/y/p/r", "region=eu")).key == y.key


def test_dependency_overrides_present_when_the_keyer_is_built_are_walked() -> None:
    def real(a: str | None = None) -> str | None:
        return a

    def fake(b: str | None = None) -> str | None:
        return b

    app = FastAPI()

    @app.get("/o")
    async def o(v: Annotated[str | None, Depends(real)]) -> Any:
        return v

    assert KeyProbe(app).keyer("/o").query_names == ("a",)
    app.dependency_overrides[real] = fake
    assert KeyProbe(app).keyer("/o").query_names == ("b",)


async def test_request_unkeyed_dependency_does_not_make_the_route_raw() -> None:
    class Pool:
        pass

    def get_db(request: Request) -> Iterator[Any]:
        yield request.app.state.pool

    @request_unkeyed
    def get_db_marked(request: Request) -> Iterator[Any]:
        yield request.app.state.pool

    app = FastAPI()
    app.state.pool = Pool()

    @app.get("/unmarked")
    async def unmarked(db: Annotated[Any, Depends(get_db)], a: str = "") -> Any:
        return {"a": a}

    @app.get("/marked")
    async def marked(db: Annotated[Any, Depends(get_db_marked)], a: str = "") -> Any:
        return {"a": a}

    probe = KeyProbe(app)
    assert probe.keyer("/unmarked").reads_request
    keyer = probe.keyer("/marked")
    assert not keyer.reads_request
    assert keyer.query_names == ("a",)
    one = await get(probe, "/marked", "a=1&utm=x")
    two = await get(probe, "/marked", "a=1")
    assert one.key == two.key


async def test_keyer_of_each_serving_route_reads_its_own_dependencies() -> None:
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/r")
    async def r(a: str = "") -> Any:
        return {"a": a}

    def region(region: str | None = None) -> None:
        return None

    app = FastAPI()
    app.include_router(router, prefix="/x", dependencies=[Depends(region)])
    app.include_router(router, prefix="/y")
    probe = KeyProbe(app)
    x = (await get(probe, "/x/r")).scope
    y = (await get(probe, "/y/r")).scope

    def keyer(scope: dict[str, Any], prefix: str = "p") -> RouteKeyer:
        route = effective_route(StarletteRequest(scope).scope)
        return RouteKeyer.for_route(route, prefix=prefix, vary=["Accept-Language"], injected=())

    kx, ky = keyer(x), keyer(y)
    assert kx.query_names == ("a", "region")
    assert ky.query_names == ("a",)
    assert kx.header_names == ("accept-language",)
    assert keyer(x, prefix="q").prefix == "q"


BAD_PATHS = [
    "/files/\x00",
    "/files/" + "a" * 200_000,
    "/files/%",
    "/files/../..//x",
    "/files/é\u202e",
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=range(len(BAD_PATHS)))
async def test_any_path_gives_a_key(probe: KeyProbe, path: str) -> None:
    """Through the app's routing: the endpoint sees the path parameter, the key holds it."""
    result = await probe.request(path, raw_path=b"/files/raw")
    assert result.status == 200
    assert result.key.startswith(b"t:{")
    other = await probe.request(path + "x", raw_path=b"/files/raw")
    assert other.key != result.key
    raw = await probe.request("/raw/" + path, raw_path=b"/raw/raw")
    assert raw.key.startswith(b"t:{")


def test_a_path_with_lone_surrogates_gives_a_key(probe: KeyProbe) -> None:
    """A non-conforming server may decode a path with surrogateescape: still a key."""
    keyer = probe.keyer("/files/{p:path}")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/files/\udcff\udc80",
        "query_string": b"",
        "headers": [],
    }
    key = keyer.key(StarletteRequest(scope))
    scope["path"] = "/files/\udcff"
    assert keyer.key(StarletteRequest(scope)) != key
