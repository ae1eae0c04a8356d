"""What the Redis backend and the Redis lock manager share: the Lua scripts (run by EVALSHA,
loaded on NOSCRIPT) and the lock tokens.

Every script touches only keys of one hash tag, so it runs on a cluster too. Both
``RedisBackend`` (a store can release the lock in its own round trip) and
``RedisLockManager`` run ``UNLOCK_SCRIPT``, hence one definition here.
"""

from __future__ import annotations

import hashlib
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
    "UNLOCK_SCRIPT",
    "UNLOCK_SHA",
    "new_token",
]


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

SCRIPTS = (
    BEGIN_SCRIPT,
    STORE_IF_GENERATION_SCRIPT,
    UNLOCK_SCRIPT,
    INVALIDATE_SCRIPT,
    ADD_TAG_SCRIPT,
)


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


BEGIN_SHA = _sha(BEGIN_SCRIPT)
STORE_SHA = _sha(STORE_IF_GENERATION_SCRIPT)
UNLOCK_SHA = _sha(UNLOCK_SCRIPT)
INVALIDATE_SHA = _sha(INVALIDATE_SCRIPT)
ADD_TAG_SHA = _sha(ADD_TAG_SCRIPT)
