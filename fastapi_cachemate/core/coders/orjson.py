"""OrjsonCoderManager: the seed's JSON coder, same calls and output.

orjson is imported on first use, not with this module: the cache itself never uses this
coder (see ``fastapi_cachemate.core.coders``), so orjson is not a dependency of the package.
Code that calls ``encode``/``decode`` needs it installed (``pip install orjson``).
"""

from __future__ import annotations

import importlib
from typing import Any

from fastapi.encoders import jsonable_encoder

from fastapi_cachemate.core.types import CoderManager

__all__ = ["OrjsonCoderManager"]


def _orjson() -> Any:
    try:
        return importlib.import_module("orjson")
    except ImportError as exc:
        raise ImportError(
            "OrjsonCoderManager.encode/decode need orjson: pip install orjson "
            "(the cache does not: its entries are MessagePack written by the native core)"
        ) from exc


class OrjsonCoderManager(CoderManager):
    """JSON with orjson: non-str keys allowed, other types through FastAPI's jsonable_encoder."""

    def encode(self, value: Any) -> bytes:
        orjson = _orjson()
        data: bytes = orjson.dumps(value, default=jsonable_encoder, option=orjson.OPT_NON_STR_KEYS)
        return data

    def decode(self, data: bytes) -> Any:
        return _orjson().loads(data)
