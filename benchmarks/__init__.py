"""Benchmarks of fastapi-cachemate against the floor and the peers (``make bench``)."""
