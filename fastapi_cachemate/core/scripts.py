"""What the Redis backend and the Redis lock manager share: the Lua scripts (run by EVALSHA,
loaded on NOSCRIPT) and the lock tokens.

Every script touches only keys of one hash tag, so it runs on a cluster too. Both
``RedisBackend`` (a store can release the lock in its own round trip) and
``RedisLockManager`` run ``UNLOCK_SCRIPT``, hence one definition here.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

__all__ = [
    "ADD_TAG_SCRIPT",
    "ADD_TAG_SHA",
    "BEGIN_SCRIPT",
    "BEGIN_SHA",
    "EXTEND_SCRIPT",
    "INVALIDATE_SCRIPT",
    "INVALIDATE_SHA",
    "SCRIPTS",
    "STORE_IF_GENERATION_SCRIPT",
    "STORE_SHA",
    "TAKE_OVER_SCRIPT",
    "TAKE_OVER_SHA",
    "UNLOCK_SCRIPT",
    "UNLOCK_SHA",
    "junk_lock_removed",
    "new_token",
]

logger = logging.getLogger(__name__)


def new_token() -> str:
    """A fresh random lock token (128 bits), one per acquisition."""
    return secrets.token_hex(16)


# KEYS: K:gen; ARGV: generation_ttl_ms. The generation a computation begins with (nil: 0);
# K:gen is created ("0") if absent and lives generation_ttl_ms from now either way: a
# namespace invalidation's SCAN finds it while the computation runs, lock or no lock.
BEGIN_SCRIPT = """\
local generation = redis.call("GET", KEYS[1])
if generation then
    redis.call("PEXPIRE", KEYS[1], ARGV[1])
else
    redis.call("SET", KEYS[1], "0", "PX", ARGV[1])
end
return generation
"""

# KEYS: K, K:gen; ARGV: value, ttl_ms, generation. SET only if K:gen (nil = 0) still holds
# the generation the computation began with.
STORE_IF_GENERATION_SCRIPT = """\
if (redis.call("GET", KEYS[2]) or "0") ~= ARGV[3] then
    return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1
"""

# KEYS: the lock; ARGV: token. Delete the lock only if it still holds the token (the
# RedisLockManager's unlock, here so that a store can release the lock in its round trip).
UNLOCK_SCRIPT = """\
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""

# KEYS: K1, K1:gen, K2, K2:gen... (one slot on a cluster; at most KEYS_PER_SCRIPT pairs);
# ARGV: generation_ttl_ms. Per key: bump the generation (so that no computation that began
# before can store), then drop the entry. The number of entries there were.
INVALIDATE_SCRIPT = """\
local removed = 0
for i = 1, #KEYS, 2 do
    redis.call("INCR", KEYS[i + 1])
    redis.call("PEXPIRE", KEYS[i + 1], ARGV[1])
    removed = removed + redis.call("UNLINK", KEYS[i])
end
return removed
"""

# KEYS: P:tag:{T}; ARGV: K, ttl_ms. Register K; the set lives at least ttl_ms more.
ADD_TAG_SCRIPT = """\
redis.call("SADD", KEYS[1], ARGV[1])
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[2]) then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 1
"""

# KEYS: the lock; ARGV: token, ttl_ms. Push the lock's expiry only if it still holds the token.
EXTEND_SCRIPT = """\
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: the lock; ARGV: token, ttl_ms. Run when SET NX PX could not take the lock and the
# lock key had no expiry (PTTL -1). Every lock the cache takes has one (SET ... PX), whatever
# its value, so a key without one is junk (bytes, a token or another Redis type written by
# someone else) that would otherwise look held forever: it is deleted and the lock set.
# Checked again here, atomically: a live lock (an expiry) is left alone. 2: junk removed,
# the lock is ours; 1: the key was gone meanwhile, the lock is ours; 0: a live lock.
TAKE_OVER_SCRIPT = """\
local pttl = redis.call("PTTL", KEYS[1])
if pttl >= 0 then
    return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
if pttl == -1 then
    return 2
end
return 1
"""

SCRIPTS = (
    BEGIN_SCRIPT,
    STORE_IF_GENERATION_SCRIPT,
    UNLOCK_SCRIPT,
    INVALIDATE_SCRIPT,
    ADD_TAG_SCRIPT,
    TAKE_OVER_SCRIPT,
)


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


BEGIN_SHA = _sha(BEGIN_SCRIPT)
STORE_SHA = _sha(STORE_IF_GENERATION_SCRIPT)
UNLOCK_SHA = _sha(UNLOCK_SCRIPT)
INVALIDATE_SHA = _sha(INVALIDATE_SCRIPT)
ADD_TAG_SHA = _sha(ADD_TAG_SCRIPT)
TAKE_OVER_SHA = _sha(TAKE_OVER_SCRIPT)


def junk_lock_removed(lock_key: bytes) -> None:
    """Log (WARNING) that junk at lock_key was replaced by a lock: one record per junk value
    found, since it is gone once replaced."""
    logger.warning(
        "junk at lock key %r (no expiry: no lock of ours) removed; the lock is taken",
        lock_key,
        extra={"key": lock_key.decode("utf-8", "replace"), "reason": "junk_lock"},
    )
