"""Twin of csrc/key.c: cache keys from a per-route KeySpec and the request's parts.

The key material is a canonical, length-prefixed, type-tagged encoding (format version 1)
that can be parsed back in exactly one way, so two different inputs never encode the same:

    material   = b"cmk" VERSION spec request
    spec       = F(b"p", prefix) F(b"r", route) query_decl header_decl cookie_decl
    query_decl = b"*"                                  (query_names is None: every item)
               | b"q" varint(n) F(b"n", name) * n      (declared names, spec order)
    header_decl= b"h" varint(n) F(b"n", lower-case name) * n
    cookie_decl= b"c" varint(n) F(b"n", name) * n
    request    = F(b"M", method) F(b"U", path) query headers cookies
    query      = (F(b"K", name) F(b"V", value))* b"."  (query_names is None: request order)
               | for each declared name: F(b"V", value)* b"."   (request order)
    headers    = for each spec header name: F(b"H", value)* b"."  (ASGI order, every value)
    cookies    = for each spec cookie name: F(b"C", value) | b"-"   (present | absent)
    F(tag, s)  = tag varint(len(s)) s;  varint = unsigned LEB128

str is UTF-8 (surrogatepass, so lone surrogates encode and never raise). The material is
hashed with BLAKE2b to 24 bytes: key = prefix + b":{" + hex(first 16) + b"}" (a Redis
Cluster hash tag, so key + b":lock" lands in the same slot), fingerprint = last 8 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final, final

__all__ = ["KEY_FORMAT_VERSION", "KeySpec", "build_key", "key_material"]

KEY_FORMAT_VERSION: Final = 1
_MAGIC: Final = b"cmk" + bytes([KEY_FORMAT_VERSION])
_DIGEST_SIZE: Final = 24
_KEY_HASH_BYTES: Final = 16


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(out: bytearray, tag: bytes, data: bytes) -> None:
    out += tag
    out += _varint(len(data))
    out += data


def _str_arg(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    return value


def _names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
        raise TypeError(f"{what} must be a sequence of str, not {type(value).__name__}")
    return tuple(_str_arg(v, f"{what} items") for v in value)


def _pair(item: object, what: str) -> tuple[object, object]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"{what} items must be (name, value) pairs")
    return item[0], item[1]


@final
class KeySpec:
    """What identifies a response of one endpoint, prepared once per route.

    query_names: the declared query parameter names (aliases) in a fixed order, or None to
    key on every query item in request order (the endpoint reads the raw request).
    header_names: lower-case header names whose values enter the key (declared Header()
    params and Vary). cookie_names: declared Cookie() params and varied cookies.
    """

    __slots__ = (
        "_cookie_names",
        "_header_bytes",
        "_header_names",
        "_prefix",
        "_prefix_bytes",
        "_query_names",
        "_route",
        "_spec_bytes",
    )

    def __init__(
        self,
        prefix: str,
        route: str,
        query_names: Sequence[str] | None,
        header_names: Sequence[str] = (),
        cookie_names: Sequence[str] = (),
    ) -> None:
        prefix = _str_arg(prefix, "prefix")
        route = _str_arg(route, "route")
        if not prefix:
            raise ValueError("KeySpec prefix must not be empty")
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                f"KeySpec prefix must not contain '{{' or '}}' (build_key adds the Redis "
                f"Cluster hash tag): {prefix!r}"
            )
        qnames = None if query_names is None else _names(query_names, "query_names")
        header_bytes = tuple(_utf8(h).lower() for h in _names(header_names, "header_names"))
        cnames = _names(cookie_names, "cookie_names")

        spec = bytearray(_MAGIC)
        _field(spec, b"p", _utf8(prefix))
        _field(spec, b"r", _utf8(route))
        if qnames is None:
            spec += b"*"
        else:
            spec += b"q" + _varint(len(qnames))
            for name in qnames:
                _field(spec, b"n", _utf8(name))
        spec += b"h" + _varint(len(header_bytes))
        for hname in header_bytes:
            _field(spec, b"n", hname)
        spec += b"c" + _varint(len(cnames))
        for name in cnames:
            _field(spec, b"n", _utf8(name))

        self._prefix = prefix
        self._route = route
        self._query_names = qnames
        self._header_bytes = header_bytes
        self._header_names = tuple(h.decode("utf-8", "surrogatepass") for h in header_bytes)
        self._cookie_names = cnames
        self._prefix_bytes = _utf8(prefix)
        self._spec_bytes = bytes(spec)

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def route(self) -> str:
        return self._route

    @property
    def query_names(self) -> tuple[str, ...] | None:
        return self._query_names

    @property
    def header_names(self) -> tuple[str, ...]:
        """The header names, ASCII lower-cased."""
        return self._header_names

    @property
    def cookie_names(self) -> tuple[str, ...]:
        return self._cookie_names

    def __repr__(self) -> str:
        return (
            f"KeySpec(prefix={self._prefix!r}, route={self._route!r}, "
            f"query_names={self._query_names!r}, header_names={self._header_names!r}, "
            f"cookie_names={self._cookie_names!r})"
        )


def key_material(
    spec: KeySpec,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[bytes, bytes]],
    cookies: Mapping[str, str] | None = None,
    /,
) -> bytes:
    """The canonical encoding that build_key hashes (see the module docstring)."""
    if not isinstance(spec, KeySpec):
        raise TypeError(f"spec must be KeySpec, not {type(spec).__name__}")
    out = bytearray(spec._spec_bytes)
    _field(out, b"M", _utf8(_str_arg(method, "method")))
    _field(out, b"U", _utf8(_str_arg(path, "path")))

    items: list[tuple[str, str]] = []
    for item in query:
        name, value = _pair(item, "query")
        items.append((_str_arg(name, "query names"), _str_arg(value, "query values")))
    if spec._query_names is None:
        for name, value in items:
            _field(out, b"K", _utf8(name))
            _field(out, b"V", _utf8(value))
        out += b"."
    else:
        for wanted in spec._query_names:
            for name, value in items:
                if name == wanted:
                    _field(out, b"V", _utf8(value))
            out += b"."

    if spec._header_bytes:
        pairs: list[tuple[bytes, bytes]] = []
        for hitem in headers:
            hname, hvalue = _pair(hitem, "headers")
            if not isinstance(hname, bytes) or not isinstance(hvalue, bytes):
                raise TypeError("headers items must be (bytes, bytes) pairs")
            pairs.append((hname, hvalue))
        for wanted_b in spec._header_bytes:
            for hname_b, hvalue_b in pairs:
                if len(hname_b) == len(wanted_b) and hname_b.lower() == wanted_b:
                    _field(out, b"H", hvalue_b)
            out += b"."

    if spec._cookie_names:
        for cname in spec._cookie_names:
            if cookies is None:
                out += b"-"
                continue
            try:
                cvalue = cookies[cname]
            except KeyError:
                out += b"-"
                continue
            _field(out, b"C", _utf8(_str_arg(cvalue, "cookie values")))
    return bytes(out)


def build_key(
    spec: KeySpec,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[bytes, bytes]],
    cookies: Mapping[str, str] | None = None,
    /,
) -> tuple[bytes, bytes]:
    """Return (key, fingerprint): key is b"<prefix>:{<32 hex>}", fingerprint 8 bytes."""
    material = key_material(spec, method, path, query, headers, cookies)
    digest = hashlib.blake2b(material, digest_size=_DIGEST_SIZE).digest()
    key = spec._prefix_bytes + b":{" + digest[:_KEY_HASH_BYTES].hex().encode("ascii") + b"}"
    return key, digest[_KEY_HASH_BYTES:]
