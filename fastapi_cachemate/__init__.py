"""fastapi-cachemate: a response cache for FastAPI with a C hot path."""

__version__ = "0.2.0"
