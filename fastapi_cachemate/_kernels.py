"""The one place the package imports its kernels from.

``FASTAPI_CACHEMATE_PURE=1`` swaps the C extension for its pure-Python twin
(``fastapi_cachemate._pure``): same names, same signatures, same results. The twin is
the test oracle and a debugging aid; it is much slower.
"""

from __future__ import annotations

import os

__all__ = ["IMPLEMENTATION", "Entry", "kernels"]

if os.environ.get("FASTAPI_CACHEMATE_PURE", "") == "1":
    from fastapi_cachemate import _pure as kernels

    IMPLEMENTATION = "python"
else:
    from fastapi_cachemate import _native as kernels  # type: ignore[no-redef]

    IMPLEMENTATION = "c"

#: What ``read_entry`` returns (the twin's class stands for both in annotations).
Entry = kernels.Entry
