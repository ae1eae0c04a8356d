"""Pure-Python twins of the C kernels in ``fastapi_cachemate._native``.

Each module here mirrors one file of csrc/ with the same names and signatures; the test
suite runs against both through one fixture, and ``FASTAPI_CACHEMATE_PURE=1`` makes the
package use these instead of the extension.
"""

from fastapi_cachemate._pure.blake2b import blake2b
from fastapi_cachemate._pure.msgpack import MalformedError, packb, unpackb

__all__ = ["MalformedError", "blake2b", "packb", "unpackb"]
