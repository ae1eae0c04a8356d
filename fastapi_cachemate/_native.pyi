"""Types of the C extension ``fastapi_cachemate._native``.

Every function here has a pure-Python twin with the same signature in
``fastapi_cachemate._pure``; ``fastapi_cachemate._kernels`` picks one of the two.
Kept in step with the C docstrings by ``mypy.stubtest`` (``make lint``).
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final, final

from typing_extensions import Buffer

__version__: Final[str]
ZSTD_VERSION: Final[str]

# Compression modes of the entry writer (the seed's settings map onto these).
COMPRESS_DISABLED: Final[int]  # 0
COMPRESS_SMART: Final[int]  # 1: compress when the body is at least min_size bytes
COMPRESS_ALL: Final[int]  # 2

# Freshness states returned by read_entry (Entry.state).
FRESH: Final[int]  # 0
STALE: Final[int]  # 1: past ttl, inside grace: servable while one refresher recomputes
EXPIRED: Final[int]  # 2: past ttl + grace: a miss

# The stored entry (docs/entry-format.md).
ENTRY_FORMAT_VERSION: Final[int]  # 1: read_entry returns None for any other version
ENTRY_MAX_BODY: Final[int]  # 67108864: largest body write_entry takes and read_entry returns

# The in-process store: what one item costs beyond len(key) + len(value), and how many
# least recently used items set() looks at for expired ones before evicting live ones.
STORE_ITEM_OVERHEAD: Final[int]  # 64
STORE_EXPIRED_SCAN: Final[int]  # 8

class MalformedError(ValueError):
    """Raised by the decoders on bytes that are not a valid encoding."""

# --- MessagePack (csrc/msgpack_pack.c, csrc/msgpack_unpack.c) ---------------------------
def packb(obj: object, /) -> bytes: ...
def unpackb(data: Buffer, /) -> Any: ...

# --- zstd (csrc/compress.c) ---------------------------------------------------------------
# decompress accepts exactly one zstd frame and raises MalformedError on anything else
# (skippable-only, several frames, trailing bytes, truncation) and on content > max_size.
ZSTD_MIN_LEVEL: Final[int]  # ZSTD_minCLevel(), -131072
ZSTD_MAX_LEVEL: Final[int]  # ZSTD_maxCLevel(), 22; compress raises ValueError outside

def compress(data: Buffer, /, level: int = 3) -> bytes: ...
def decompress(data: Buffer, /, max_size: int = 67108864) -> bytes: ...

# --- BLAKE2b, RFC 7693 (csrc/blake2b.c) ---------------------------------------------------
def blake2b(data: Buffer, /, digest_size: int = 32, key: Buffer = b"") -> bytes: ...

# --- keys (csrc/key.c) --------------------------------------------------------------------
@final
class KeySpec:
    """What identifies a response of one endpoint, prepared once per route.

    query_names: the declared query parameter names (aliases) in a fixed order, or None to
    key on every query item in request order (the endpoint reads the raw request).
    header_names: lower-case header names whose values enter the key (declared Header()
    params and Vary). cookie_names: declared Cookie() params and varied cookies.
    """

    def __new__(
        cls,
        prefix: str,
        route: str,
        query_names: Sequence[str] | None,
        header_names: Sequence[str] = (),
        cookie_names: Sequence[str] = (),
    ) -> KeySpec: ...
    @property
    def prefix(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def query_names(self) -> tuple[str, ...] | None: ...
    @property
    def header_names(self) -> tuple[str, ...]:
        """The header names, ASCII lower-cased."""
    @property
    def cookie_names(self) -> tuple[str, ...]: ...

def key_material(
    spec: KeySpec,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[bytes, bytes]],
    cookies: Mapping[str, str] | None = None,
    /,
) -> bytes:
    """The canonical encoding that build_key hashes (format: csrc/key.c, docs/design.md)."""

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

# --- the stored entry (csrc/entry.c) ------------------------------------------------------
@final
class Entry:
    """What read_entry returns: all that a hit needs, in one call."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes
    age: float  # seconds since the entry was created (>= 0)
    remaining: float  # seconds of freshness left (negative once stale)
    state: int  # FRESH, STALE or EXPIRED
    compute_ms: float
    ttl: float
    grace: float
    created: float
    tags: list[str]

# status 100..999; created finite; ttl, grace, compute_ms finite and >= 0; fingerprint
# 0 or 8 bytes; compression COMPRESS_*; min_size >= 0; level -131072..22; body at most
# ENTRY_MAX_BODY bytes: ValueError otherwise (TypeError for wrong types).
# COMPRESS_SMART compresses a body of at least min_size bytes and keeps the frame only when
# it is smaller than the body; COMPRESS_ALL always stores a zstd frame.
def write_entry(
    *,
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    body: Buffer,
    created: float,
    ttl: float,
    grace: float = 0.0,
    compute_ms: float = 0.0,
    etag: bytes | None = None,
    tags: Sequence[str] = (),
    fingerprint: bytes = b"",
    compression: int = 1,
    min_size: int = 1024,
    level: int = 3,
) -> bytes:
    """Encode one entry. etag=None computes a strong ETag from a BLAKE2b of the body."""

def read_entry(data: Buffer, now: float, fingerprint: bytes | None = None, /) -> Entry | None:
    """Decode an entry; None for anything malformed, foreign, newer or of another key.

    With a fingerprint, an entry stored with another one (or with none) is None.
    Raises only TypeError for a data that is not a buffer or a fingerprint that is not bytes.
    """

def body_etag(body: Buffer, /) -> bytes:
    """The strong ETag write_entry stores for this body, quotes included."""

# --- freshness and refresh decisions (csrc/refresh.c) -------------------------------------
# The rule: docs/design.md, "Refresh rule". Arguments are float or int (TypeError otherwise).
REFRESH_TTL_FLOOR: Final[float]  # 0.05: the window is never shorter than this part of the ttl

def refresh_window(
    compute_ms: float, ttl_ms: float, max_planning_ms: float, buffer: float, /
) -> float:
    """ms before expiry from which refresh_due fires: max(b*c + min(3c, P), floor*ttl)."""

def refresh_due(
    compute_ms: float,
    remaining_ms: float,
    ttl_ms: float,
    max_planning_ms: float,
    buffer: float,
    /,
) -> bool: ...
def xfetch_due(compute_ms: float, remaining_ms: float, beta: float, u: float, /) -> bool: ...

# --- the in-process store (csrc/store.c) --------------------------------------------------
@final
class MemoryStore:
    """A bounded map bytes -> bytes with per-item expiry, a byte budget and LRU eviction.

    Keys and values are exact bytes (TypeError otherwise). An item costs len(key) +
    len(value) + STORE_ITEM_OVERHEAD bytes; it is expired when expires_at <= now.
    len() counts expired items not yet dropped; evictions counts live items evicted for
    room (expired ones dropped on the way are not counted). Thread safety comes from the
    GIL: no method releases it, so each one runs atomically.
    """

    def __new__(cls, max_bytes: int = 67108864) -> MemoryStore: ...
    def get(self, key: bytes, now: float, /) -> bytes | None:
        """The value (now the most recent item), or None; drops an expired item."""
    def get_with_expiry(self, key: bytes, now: float, /) -> tuple[bytes, float] | None:
        """Like get, with the item's expires_at."""
    def set(self, key: bytes, value: bytes, expires_at: float, now: float, /) -> None:
        """Store (replacing); a value too large for max_bytes is not stored (and the old
        one under that key is gone)."""
    def add(self, key: bytes, value: bytes, expires_at: float, now: float, /) -> bool:
        """Store only if the key is absent or expired; True if stored."""
    def delete(self, key: bytes, /) -> bool:
        """Remove the item (expired or not); True if there was one."""
    def keys(self, prefix: bytes = b"", /) -> list[bytes]:
        """The keys (expired ones included) that start with prefix, least recently used
        first; the items are not touched (namespace invalidation walks them)."""
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def evictions(self) -> int: ...

# --- cache counters (csrc/stats.c) --------------------------------------------------------
# One row of unsigned 64-bit counters per endpoint (wrapping modulo 2**64), STATS_COUNTERS
# in index order: hits, misses, stale_served, bypass, no_cache, stored, not_stored,
# refreshes, refresh_failures, lock_waits, lock_timeouts, backend_errors,
# bytes_before_compression, bytes_after_compression, then not_stored_<reason> for each of
# NOT_STORED_REASONS: status, set_cookie, no_store, private, vary_star, vary_unkeyed, head,
# head_empty_body, authorization, too_large, streaming, error. Counts: int >= 0 (TypeError /
# ValueError / OverflowError); indexes: int in range (TypeError / ValueError).
STATS_COUNTERS: Final[tuple[str, ...]]
NOT_STORED_REASONS: Final[tuple[str, ...]]
BREAKER_CLOSED: Final[int]  # 0
BREAKER_OPEN: Final[int]  # 1
BREAKER_HALF_OPEN: Final[int]  # 2

@final
class EndpointStats:
    """The counters of one endpoint (from Stats.endpoint(name)); not instantiable."""

    @property
    def name(self) -> str: ...
    def hit(self) -> None: ...
    def miss(self) -> None: ...
    def stale(self) -> None: ...
    def bypass(self) -> None: ...
    def no_cache(self) -> None: ...
    def refresh(self) -> None: ...
    def refresh_failure(self) -> None: ...
    def lock_wait(self) -> None: ...
    def lock_timeout(self) -> None: ...
    def backend_error(self) -> None: ...
    def stored(self, raw_bytes: int, stored_bytes: int, /) -> None:
        """stored += 1, bytes_before_compression += raw_bytes, bytes_after_compression +=
        stored_bytes."""
    def not_stored(self, reason: int, /) -> None:
        """not_stored += 1 and not_stored_<NOT_STORED_REASONS[reason]> += 1."""
    def add(self, counter: int, n: int = 1, /) -> None:
        """Add n to STATS_COUNTERS[counter] only."""
    def snapshot(self) -> dict[str, int]: ...
    def reset(self) -> None: ...

@final
class Stats:
    """Per-process cache counters, one EndpointStats row per endpoint, and the breaker gauge."""

    def __new__(cls) -> Stats: ...
    def endpoint(self, name: str, /) -> EndpointStats:
        """The row of that endpoint, created on the first call, the same object after."""
    def snapshot(self) -> dict[str, dict[str, int]]: ...
    def totals(self) -> dict[str, int]: ...
    def endpoints(self) -> list[str]: ...
    def reset(self) -> None:
        """Zero every row in place and set breaker_state to BREAKER_CLOSED."""
    breaker_state: int  # BREAKER_CLOSED, BREAKER_OPEN or BREAKER_HALF_OPEN (ValueError else)
    def __len__(self) -> int: ...
