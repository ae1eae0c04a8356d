"""What is decided once per cached route: what it reads (introspect), how a request
is keyed (keyer), how a result is rendered (render), whether hits may skip FastAPI's
handler (hitfirst)."""
