"""Backends: RedisBackend (shared, redis.asyncio) and MemoryBackend (in process)."""
