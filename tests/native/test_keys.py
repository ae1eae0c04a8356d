"""Keys (csrc/key.c): KeySpec validation, the canonical material, C against the twin.

Injectivity is shown by a decoder written here from the format in csrc/key.c: every
material parses back to exactly what identifies the request, so two inputs that differ in
it cannot share a material.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_cachemate import _native, _pure

KEY_RE = re.compile(rb"^(?P<prefix>.+):\{(?P<hash>[0-9a-f]{32})\}$", re.DOTALL)


# ---- a decoder of the material (format version 1) ----------------------------------------


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> bytes:
        assert self.pos < len(self.data), "material truncated"
        b = self.data[self.pos : self.pos + 1]
        self.pos += 1
        return b

    def peek(self) -> bytes:
        return self.data[self.pos : self.pos + 1]

    def varint(self) -> int:
        shift = value = 0
        while True:
            b = self.byte()[0]
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    def field(self, tag: bytes) -> bytes:
        got = self.byte()
        assert got == tag, (got, tag)
        n = self.varint()
        assert self.pos + n <= len(self.data)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def names(self, tag: bytes) -> list[bytes]:
        assert self.byte() == tag
        return [self.field(b"n") for _ in range(self.varint())]

    def until_dot(self, tag: bytes) -> list[bytes]:
        values = []
        while self.peek() != b".":
            values.append(self.field(tag))
        self.byte()
        return values


def parse_material(data: bytes) -> tuple[Any, ...]:
    r = Reader(data)
    assert data[:4] == b"cmk\x01"
    r.pos = 4
    prefix, route = r.field(b"p"), r.field(b"r")
    qnames: list[bytes] | None
    if r.peek() == b"*":
        r.byte()
        qnames = None
    else:
        qnames = r.names(b"q")
    hnames = r.names(b"h")
    cnames = r.names(b"c")
    method, path = r.field(b"M"), r.field(b"U")
    query: Any
    if qnames is None:
        query = []
        while r.peek() != b".":
            query.append((r.field(b"K"), r.field(b"V")))
        r.byte()
    else:
        query = [r.until_dot(b"V") for _ in qnames]
    headers = [r.until_dot(b"H") for _ in hnames]
    cookies: list[bytes | None] = []
    for _ in cnames:
        if r.peek() == b"-":
            r.byte()
            cookies.append(None)
        else:
            cookies.append(r.field(b"C"))
    assert r.pos == len(data), "trailing bytes in the material"
    return (prefix, route, qnames, hnames, cnames, method, path, query, headers, cookies)


def u8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def projection(
    spec_args: tuple[Any, ...],
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[bytes, bytes]],
    cookies: Mapping[str, str] | None,
) -> tuple[Any, ...]:
    """What identifies the request under this spec, written independently of the encoder."""
    prefix, route, qnames, hnames, cnames = spec_args
    hlow = [u8(h).lower() for h in hnames]
    if qnames is None:
        q: Any = [(u8(k), u8(v)) for k, v in query]
    else:
        q = [[u8(v) for k, v in query if k == name] for name in qnames]
    h = [[v for k, v in headers if k.lower() == name] for name in hlow]
    c = [None if cookies is None or n not in cookies else u8(cookies[n]) for n in cnames]
    return (
        u8(prefix),
        u8(route),
        None if qnames is None else [u8(n) for n in qnames],
        hlow,
        [u8(n) for n in cnames],
        u8(method),
        u8(path),
        q,
        h,
        c,
    )


# ---- strategies ----------------------------------------------------------------------------

SEPARATORS = "&=;,:/?%{}.\x00-*HKVCMU"
text = st.text(alphabet=st.sampled_from(list("ab" + SEPARATORS + "é\ud800\U0001f600")), max_size=6)
names = st.text(alphabet="abAB-", min_size=1, max_size=3)
prefixes = st.text(alphabet="ab:-\ud800", min_size=1, max_size=4)
header_value = st.binary(max_size=6)
spec_args = st.tuples(
    prefixes,
    text,
    st.none() | st.lists(names, max_size=3),
    st.lists(names, max_size=2),
    st.lists(names, max_size=2),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[Any, ...]:
    args = draw(spec_args)
    pool = ["a", "b", "A", *(args[2] or [])]
    query = draw(st.lists(st.tuples(st.sampled_from(pool), text), max_size=5))
    hpool = [u8(h) for h in args[3]] + [b"x", b"A"]
    headers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(hpool).map(lambda b: b.upper() if b"b" in b else b), header_value
            ),
            max_size=4,
        )
    )
    cookies = draw(st.none() | st.dictionaries(st.sampled_from([*args[4], "z"]), text, max_size=3))
    return (args, draw(st.sampled_from(["GET", "HEAD", "G"])), draw(text), query, headers, cookies)


def material(module: ModuleType, req: tuple[Any, ...]) -> bytes:
    args, method, path, query, headers, cookies = req
    spec = module.KeySpec(*args)
    out: bytes = module.key_material(spec, method, path, query, headers, cookies)
    return out


# ---- properties ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(req=requests())
def test_material_parses_back_to_the_identifying_parts(req: tuple[Any, ...]) -> None:
    got = material(_native, req)
    assert got == material(_pure, req)
    assert parse_material(got) == projection(*req)


@settings(max_examples=200)
@given(a=requests(), b=requests())
def test_distinct_inputs_distinct_material_and_keys(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    ma, mb = material(_native, a), material(_native, b)
    if projection(*a) != projection(*b):
        assert ma != mb
        ka = _native.build_key(_native.KeySpec(*a[0]), *a[1:])
        kb = _native.build_key(_native.KeySpec(*b[0]), *b[1:])
        assert ka != kb
        assert ka[0] != kb[0]
    else:
        assert ma == mb


@settings(max_examples=100)
@given(req=requests())
def test_c_and_twin_give_identical_keys(req: tuple[Any, ...]) -> None:
    args, *rest = req
    key_c = _native.build_key(_native.KeySpec(*args), *rest)
    key_py = _pure.build_key(_pure.KeySpec(*args), *rest)
    assert key_c == key_py
    digest = hashlib.blake2b(material(_native, req), digest_size=24).digest()
    assert key_c == (u8(args[0]) + b":{" + digest[:16].hex().encode() + b"}", digest[16:])


# ---- tricky pairs ----------------------------------------------------------------------------

Q = ["q", "a", "b"]
TRICKY: list[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = [
    ("path separators", (Q, "/a:b", [], [], None), (Q, "/a/b", [], [], None)),
    (
        "repeated vs joined",
        (Q, "/", [("q", "a"), ("q", "b")], [], None),
        (Q, "/", [("q", "a,b")], [], None),
    ),
    (
        "repeated vs joined (all)",
        (None, "/", [("q", "a"), ("q", "b")], [], None),
        (None, "/", [("q", "a,b")], [], None),
    ),
    (
        "semicolon vs ampersand",
        (Q, "/", [("a", "1;b=2")], [], None),
        (Q, "/", [("a", "1"), ("b", "2")], [], None),
    ),
    (
        "semicolon vs ampersand (all)",
        (None, "/", [("a", "1;b=2")], [], None),
        (None, "/", [("a", "1"), ("b", "2")], [], None),
    ),
    (
        "decoded %26",
        (None, "/", [("a", "x&b=y")], [], None),
        (None, "/", [("a", "x"), ("b", "y")], [], None),
    ),
    ("absent vs empty query", (Q, "/", [], [], None), (Q, "/", [("q", "")], [], None)),
    ("absent vs empty (all)", (None, "/", [], [], None), (None, "/", [("q", "")], [], None)),
    (
        "one empty vs two empty",
        (Q, "/", [("q", "")], [], None),
        (Q, "/", [("q", ""), ("q", "")], [], None),
    ),
    (
        "value order",
        (Q, "/", [("q", "1"), ("q", "2")], [], None),
        (Q, "/", [("q", "2"), ("q", "1")], [], None),
    ),
    (
        "name/value boundary",
        (None, "/", [("ab", "c")], [], None),
        (None, "/", [("a", "bc")], [], None),
    ),
    ("path vs query", (None, "/a?b=1", [], [], None), (None, "/a", [("b", "1")], [], None)),
    (
        "value moves between names",
        (Q, "/", [("a", "1")], [], None),
        (Q, "/", [("b", "1")], [], None),
    ),
    (
        "header joined vs repeated",
        (Q, "/", [], [(b"x-h", b"a, b")], None),
        (Q, "/", [], [(b"x-h", b"a"), (b"x-h", b"b")], None),
    ),
    ("header absent vs empty", (Q, "/", [], [], None), (Q, "/", [], [(b"x-h", b"")], None)),
    (
        "header value with our tags",
        (Q, "/", [], [(b"x-h", b"a.H\x01b")], None),
        (Q, "/", [], [(b"x-h", b"a"), (b"x-h", b"b")], None),
    ),
    ("cookie absent vs empty", (Q, "/", [], [], {}), (Q, "/", [], [], {"sid": ""})),
    ("cookie moves", (Q, "/", [], [], {"sid": "1"}), (Q, "/", [], [], {"lang": "1"})),
    ("query vs cookie", (Q, "/", [("sid", "1")], [], None), (Q, "/", [], [], {"sid": "1"})),
    (
        "surrogate vs its bytes as text",
        (Q, "\ud800", [], [], None),
        (Q, "\xed\xa0\x80", [], [], None),
    ),
    (
        "surrogate pair vs astral",
        (Q, "\ud83d\ude00", [], [], None),
        (Q, "\U0001f600", [], [], None),
    ),
]


@pytest.mark.parametrize(("a", "b"), [(a, b) for _, a, b in TRICKY], ids=[n for n, _, _ in TRICKY])
def test_tricky_pairs_differ(kernels: ModuleType, a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    def key(req: tuple[Any, ...]) -> tuple[bytes, bytes, bytes]:
        qnames, path, query, headers, cookies = req
        spec = kernels.KeySpec("api", "/r", qnames, ["X-H"], ["sid", "lang"])
        km = kernels.key_material(spec, "GET", path, query, headers, cookies)
        k, fp = kernels.build_key(spec, "GET", path, query, headers, cookies)
        return km, k, fp

    ka, kb = key(a), key(b)
    assert ka[0] != kb[0]
    assert ka[1] != kb[1]
    assert ka[2] != kb[2]


def test_method_path_boundary(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("api", "/r", None)
    assert kernels.build_key(spec, "GET", "/x", [], []) != kernels.build_key(
        spec, "GE", "T/x", [], []
    )


def test_specs_that_differ_give_different_keys(kernels: ModuleType) -> None:
    query = [("a", "1")]
    keys = {
        kernels.build_key(kernels.KeySpec(*args), "GET", "/", query, [], None)[0]
        for args in [
            ("api", "/r", ["a"]),
            ("api", "/r", ["b"]),
            ("api", "/r", ["a", "b"]),
            ("api", "/r", ["b", "a"]),
            ("api", "/r", None),
            ("api", "/s", ["a"]),
            ("api:x", "/r", ["a"]),
            ("api", "/r", ["a"], ["a"]),
            ("api", "/r", ["a"], [], ["a"]),
        ]
    }
    assert len(keys) == 9


# ---- behaviour ----------------------------------------------------------------------------


def test_key_shape_and_hash_tag(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("cache:v1", "/items/{id}", ["q"])
    key, fp = kernels.build_key(spec, "GET", "/items/1", [("q", "x")], [])
    m = KEY_RE.match(key)
    assert m is not None
    assert m["prefix"] == b"cache:v1"
    assert len(fp) == 8
    # Redis Cluster hashes what lies between the first "{" and the next "}": the lock key
    # shares the slot.
    for k in (key, key + b":lock"):
        start = k.index(b"{")
        assert k[start + 1 : k.index(b"}", start)] == m["hash"]


def test_canonical_for_what_does_not_identify(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("api", "/r", ["a", "b"], ["accept-language"], ["sid"])
    base = kernels.build_key(
        spec, "GET", "/", [("a", "1"), ("b", "2")], [(b"accept-language", b"en")], {"sid": "s"}
    )
    same = [
        (
            spec,
            "GET",
            "/",
            [("b", "2"), ("a", "1"), ("zzz", "9")],
            [(b"host", b"x"), (b"Accept-Language", b"en")],
            {"sid": "s", "other": "o"},
        ),
        (spec, "GET", "/", [["a", "1"], ["b", "2"]], ((b"ACCEPT-LANGUAGE", b"en"),), {"sid": "s"}),
    ]
    for args in same:
        assert kernels.build_key(*args) == base


def test_query_all_mode_keeps_request_order(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("api", "/r", None)
    a = kernels.build_key(spec, "GET", "/", [("a", "1"), ("b", "2")], [])
    b = kernels.build_key(spec, "GET", "/", [("b", "2"), ("a", "1")], [])
    assert a != b


def test_cookies_none_is_empty_and_ignored_without_cookie_names(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("api", "/r", [], (), ["sid"])
    assert kernels.build_key(spec, "GET", "/", [], [], None) == kernels.build_key(
        spec, "GET", "/", [], [], {}
    )
    assert kernels.build_key(spec, "GET", "/", [], []) == kernels.build_key(
        spec, "GET", "/", [], [], {}
    )
    plain = kernels.KeySpec("api", "/r", [])
    assert kernels.build_key(plain, "GET", "/", [], [], {"sid": "1"}) == kernels.build_key(
        plain, "GET", "/", [], []
    )
    # headers are not even looked at when the spec names none
    assert kernels.build_key(plain, "GET", "/", [], object()) == kernels.build_key(
        plain, "GET", "/", [], []
    )


class LookupMapping(Mapping[str, str]):
    def __init__(self, data: dict[str, str], fail: bool = False) -> None:
        self.data = data
        self.fail = fail

    def __getitem__(self, key: str) -> str:
        if self.fail:
            raise RuntimeError("lookup failed")
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_cookie_mappings(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("api", "/r", [], (), ["sid", "lang"])
    plain = kernels.build_key(spec, "GET", "/", [], [], {"sid": "1"})
    assert kernels.build_key(spec, "GET", "/", [], [], LookupMapping({"sid": "1"})) == plain
    with pytest.raises(RuntimeError, match="lookup failed"):
        kernels.build_key(spec, "GET", "/", [], [], LookupMapping({}, fail=True))
    with pytest.raises(TypeError):
        kernels.build_key(spec, "GET", "/", [], [], {"sid": 1})


class ChangingName(str):
    """A cookie name whose __hash__ / __eq__ change the cookie dict being read."""

    target: ClassVar[dict[str, str]] = {}

    def __hash__(self) -> int:
        self.target.clear()
        self.target.update({f"other{i}": "x" * 100 for i in range(50)})
        self.target[str(self)] = "replaced"
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        self.target.pop("other0", None)
        return str.__eq__(self, other)


def test_cookie_name_hash_and_eq_change_the_cookies(kernels: ModuleType) -> None:
    name = ChangingName("sid")
    spec = kernels.KeySpec("api", "/r", [], (), [name])
    cookies = {"sid": "original" * 100}
    ChangingName.target = cookies
    got = kernels.build_key(spec, "GET", "/", [], [], cookies)
    ChangingName.target = {}
    plain = kernels.KeySpec("api", "/r", [], (), ["sid"])
    # the name is looked up after its __hash__ ran: the value then in the dict counts
    assert got == kernels.build_key(plain, "GET", "/", [], [], {"sid": "replaced"})


def test_lone_surrogates_never_raise(kernels: ModuleType) -> None:
    s = "\udc80x\ud800"
    spec = kernels.KeySpec("p" + s, s, [s], [s], [s])
    key, fp = kernels.build_key(spec, s, s, [(s, s)], [(u8(s), b"v")], {s: s})
    assert key.startswith(u8("p" + s) + b":{")
    twin = _pure.KeySpec("p" + s, s, [s], [s], [s])
    assert (key, fp) == _pure.build_key(twin, s, s, [(s, s)], [(u8(s), b"v")], {s: s})
    assert spec.prefix == "p" + s
    assert spec.header_names == (s,)


def test_large_input_uses_the_heap_and_matches(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("api", "/r" * 2000, None, ["x"], ["c"])
    query = [(f"k{i}", "v" * i) for i in range(200)]
    headers = [(b"x", b"h" * 5000)] * 3
    args = (spec, "GET", "/p" * 10_000, query, headers, {"c": "c" * 3000})
    got = kernels.key_material(*args)
    assert len(got) > 50_000
    twin_spec = _pure.KeySpec("api", "/r" * 2000, None, ["x"], ["c"])
    assert got == _pure.key_material(twin_spec, *args[1:])
    assert parse_material(got)[7][:2] == [(b"k0", b""), (b"k1", b"v")]


def test_spec_properties(kernels: ModuleType) -> None:
    spec = kernels.KeySpec("api", "/r", ("a", "b"), ["Accept-Language", "X-Ab"], ["sid"])
    assert spec.prefix == "api"
    assert spec.route == "/r"
    assert spec.query_names == ("a", "b")
    assert spec.header_names == ("accept-language", "x-ab")
    assert spec.cookie_names == ("sid",)
    assert kernels.KeySpec("api", "/r", None).query_names is None
    assert repr(spec).startswith("KeySpec(prefix='api', route='/r'")
    assert kernels.KeySpec(
        prefix="a", route="/", query_names=None, header_names=["H"]
    ).header_names == ("h",)


@pytest.mark.parametrize(
    ("prefix", "message"),
    [("", "empty"), ("a{b", "'{' or '}'"), ("}", "'{' or '}'"), ("{x}", "'{' or '}'")],
)
def test_spec_refuses_bad_prefixes(kernels: ModuleType, prefix: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.KeySpec(prefix, "/r", None)


@pytest.mark.parametrize(
    "args",
    [
        (b"api", "/r", None),
        ("api", None, None),
        ("api", "/r", "abc"),
        ("api", "/r", [1]),
        ("api", "/r", None, "accept"),
        ("api", "/r", None, [b"accept"]),
        ("api", "/r", None, (), "sid"),
        ("api", "/r", None, (), 5),
    ],
)
def test_spec_refuses_bad_types(kernels: ModuleType, args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError):
        kernels.KeySpec(*args)


@pytest.mark.parametrize(
    "call",
    [
        ("not a spec", "GET", "/", [], []),
        (None, "GET", "/", [], []),
        ("SPEC", b"GET", "/", [], []),
        ("SPEC", "GET", None, [], []),
        ("SPEC", "GET", "/", [("a",)], []),
        ("SPEC", "GET", "/", [("a", 1)], []),
        ("SPEC", "GET", "/", [(1, "a")], []),
        ("SPEC", "GET", "/", ["ab"], []),
        ("SPEC", "GET", "/", 5, []),
        ("SPEC", "GET", "/", [], [("x", b"1")]),
        ("SPEC", "GET", "/", [], [(b"x", "1")]),
        ("SPEC", "GET", "/", [], [(b"x",)]),
        ("SPEC", "GET", "/", [], 5),
    ],
)
def test_build_key_refuses_bad_types(kernels: ModuleType, call: tuple[Any, ...]) -> None:
    spec = kernels.KeySpec("api", "/r", ["a"], ["x"])
    args = tuple(spec if a == "SPEC" else a for a in call)
    with pytest.raises(TypeError):
        kernels.build_key(*args)
    with pytest.raises(TypeError):
        kernels.key_material(*args)


def test_spec_of_the_other_implementation_is_refused() -> None:
    with pytest.raises(TypeError):
        _native.build_key(_pure.KeySpec("a", "/", None), "GET", "/", [], [])
    with pytest.raises(TypeError):
        _pure.build_key(_native.KeySpec("a", "/", None), "GET", "/", [], [])


def test_native_keyspec_is_final_and_immutable() -> None:
    with pytest.raises(TypeError):
        type("Sub", (_native.KeySpec,), {})
    spec = _native.KeySpec("a", "/", None)
    with pytest.raises(AttributeError):
        spec.prefix = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        _native.build_key(spec, "GET", "/", [], [], None, None)  # type: ignore[call-arg]


def test_lowercasing_header_names_leaves_shared_bytes_alone(kernels: ModuleType) -> None:
    """The C spec lower-cases a copy, never CPython's cached one-byte b"A" in place."""
    kernels.KeySpec("a", "/", None, ["A", "B", "Xy"])
    # indexing reads the cached object's content (== would compare it with itself)
    assert "A".encode("ascii")[0] == 65
    assert "B".encode("ascii")[0] == 66
