"""The key layout of a namespace (docs/keys-and-invalidation.md).

For a prefix ``P`` (``CacheSetup.setup(prefix=...)``, no braces in it) and an entry key
``K = P:{h}`` (h: 32 hex digits, a Redis Cluster hash tag)::

    P:{h}            the entry (one GET on a hit)
    P:{h}:lock       its lock (held while one computation runs)
    P:{h}:gen        its generation: an integer bumped by every invalidation of K
    P:tag:{T}        the set of entry keys computed with tag T

``K``, ``K:lock`` and ``K:gen`` share K's hash tag, hence one cluster slot; a tag set lives
in the slot of its own tag. Every function here is pure and cheap.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = [
    "DEFAULT_PREFIX",
    "GENERATION_SUFFIX",
    "LOCK_SUFFIX",
    "KeyKind",
    "check_prefix",
    "classify",
    "entry_of",
    "generation_key",
    "lock_key",
    "namespace_pattern",
    "prefix_of",
    "tag_key",
]

#: The namespace of ``CacheSetup.setup()`` and of the CLI when none is given.
DEFAULT_PREFIX = "fastapi_cachemate"

LOCK_SUFFIX = b":lock"
GENERATION_SUFFIX = b":gen"
_TAG_INFIX = b":tag:{"

# The part after "P:" of the keys that invalidation handles.
_SUFFIX = re.compile(rb"\{[0-9a-f]{32}\}(?::lock|:gen)?\Z|tag:\{", re.DOTALL)


class KeyKind(Enum):
    ENTRY = "entry"
    LOCK = "lock"
    GENERATION = "generation"
    TAG = "tag"


def check_prefix(prefix: object, what: str = "a cache prefix") -> str:
    """The namespace prefix as given, or an error that names what is wrong with it."""
    if not isinstance(prefix, str):
        raise TypeError(f"{what} must be a str, got {type(prefix).__name__}")
    if not prefix:
        raise ValueError(f"{what} must not be empty")
    if "{" in prefix or "}" in prefix:
        raise ValueError(
            f"{what} ({prefix!r}) must not contain '{{' or '}}': keys carry a Redis "
            "Cluster hash tag in braces after the prefix"
        )
    return prefix


def lock_key(key: bytes) -> bytes:
    """``K:lock``: the lock of entry K (same slot)."""
    return key + LOCK_SUFFIX


def generation_key(key: bytes) -> bytes:
    """``K:gen``: the generation counter of entry K (same slot)."""
    return key + GENERATION_SUFFIX


def tag_key(prefix: str | bytes, tag: str) -> bytes:
    """``P:tag:{T}``: the set of the entry keys computed with tag T."""
    if not isinstance(tag, str):
        raise TypeError(f"a tag must be a str, got {type(tag).__name__}")
    raw = prefix.encode() if isinstance(prefix, str) else prefix
    return raw + _TAG_INFIX + tag.encode("utf-8", "surrogatepass") + b"}"


def prefix_of(key: bytes) -> bytes:
    """P of an entry key ``P:{h}`` (ValueError for a key without a hash tag)."""
    at = key.find(b":{")
    if at <= 0:
        raise ValueError(f"{key!r} is not a cache key (<prefix>:{{<hash>}})")
    return key[:at]


def entry_of(key: bytes) -> bytes:
    """K of ``K``, ``K:lock`` or ``K:gen``."""
    if key.endswith(LOCK_SUFFIX):
        return key[: -len(LOCK_SUFFIX)]
    if key.endswith(GENERATION_SUFFIX):
        return key[: -len(GENERATION_SUFFIX)]
    return key


def classify(prefix: bytes, key: bytes) -> KeyKind | None:
    """What key is in namespace prefix, or None for a key that is not ours.

    Exact: ``P:x:{h}`` (another namespace whose prefix starts with ``P:``) is None, as is
    anything a user stored under the prefix by hand.
    """
    head = prefix + b":"
    if not key.startswith(head):
        return None
    found = _SUFFIX.match(key, len(head))
    if found is None:
        return None
    text = found.group()
    if text == b"tag:{":
        return KeyKind.TAG
    if text.endswith(LOCK_SUFFIX):
        return KeyKind.LOCK
    if text.endswith(GENERATION_SUFFIX):
        return KeyKind.GENERATION
    return KeyKind.ENTRY


_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def namespace_pattern(prefix: bytes) -> bytes:
    """The SCAN MATCH pattern ``P:{*`` of the entries, locks and generations of namespace
    prefix (glob characters escaped; ``{`` is not one). Tag sets (``P:tag:{T}``) are left
    out: namespace invalidation leaves them to expire."""
    return _GLOB_SPECIAL.sub(rb"\\\1", prefix) + b":{*"
