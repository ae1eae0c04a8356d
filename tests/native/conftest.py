"""One fixture runs every kernel test against the C extension and its Python twin."""

from __future__ import annotations

from types import ModuleType

import pytest

from fastapi_cachemate import _native, _pure


@pytest.fixture(params=[_native, _pure], ids=["c", "python"])
def kernels(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module
