"""Multi-phase init: the extension can be imported again, and in a subinterpreter.

Each check runs in a fresh interpreter (subprocess): re-importing an extension changes
process-wide state that the test session should not see.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_reimport_gives_an_independent_working_module() -> None:
    out = run(
        """
        import gc, sys
        import fastapi_cachemate._native as first
        del sys.modules["fastapi_cachemate._native"]
        import fastapi_cachemate._native as second
        assert first is not second
        assert first.MalformedError is not second.MalformedError
        obj = {"a": [1, 2.5, "x", None, True, b"b"]}
        for mod in (first, second):
            assert mod.unpackb(mod.packb(obj)) == obj
            try:
                mod.unpackb(b"\\xc1")
            except mod.MalformedError:
                pass
            else:
                raise AssertionError("no MalformedError")
        # each module raises its own exception class
        try:
            first.unpackb(b"")
        except second.MalformedError:
            raise AssertionError("first raised second's MalformedError")
        except first.MalformedError:
            pass
        del first
        gc.collect()
        assert second.unpackb(second.packb(obj)) == obj
        print("ok")
        """
    )
    assert out.strip() == "ok"


# The extension is loaded from its file, not through the package: the package imports
# pydantic, whose core (PyO3) refuses subinterpreters; the extension itself must not.
LOAD_NATIVE = """
import glob, importlib.machinery, importlib.util, os, sysconfig
_folder = os.path.dirname(importlib.util.find_spec("fastapi_cachemate").origin)
_so = glob.glob(os.path.join(_folder, "_native*" + sysconfig.get_config_var("EXT_SUFFIX")))[0]
_loader = importlib.machinery.ExtensionFileLoader("fastapi_cachemate._native", _so)
m = importlib.util.module_from_spec(importlib.util.spec_from_loader(_loader.name, _loader))
_loader.exec_module(m)
"""

SUBINTERPRETER_CODE = (
    LOAD_NATIVE
    + """
obj = {"k": [1, "v", 2.5]}
assert m.unpackb(m.packb(obj)) == obj
try:
    m.unpackb(b"\\xc1")
except m.MalformedError:
    pass
else:
    raise AssertionError("no MalformedError")
"""
)


def test_import_in_a_subinterpreter() -> None:
    out = run(
        f"""
        import importlib.util
        if importlib.util.find_spec("_xxsubinterpreters") is None:
            print("no-subinterpreters")
        else:
            import _xxsubinterpreters as interpreters
            import fastapi_cachemate._native as main_module
            interp = interpreters.create()
            try:
                interpreters.run_string(interp, {SUBINTERPRETER_CODE!r})
            finally:
                interpreters.destroy(interp)
            assert main_module.unpackb(main_module.packb([1])) == [1]
            print("ok")
        """
    )
    # _xxsubinterpreters exists on 3.10 .. 3.12 (3.13 renamed it)
    if sys.version_info < (3, 13):
        assert out.strip() == "ok"
    else:
        assert out.strip() in {"ok", "no-subinterpreters"}


def test_works_with_the_pure_python_datetime_module() -> None:
    # The extension is loaded from its file (the package would import pydantic, whose
    # PyO3 core needs the C datetime). An isolated subinterpreter of Python 3.12 cannot
    # load _datetime and gets the pure-Python datetime (no C API capsule): the codec then
    # reads fields and makes objects through the classes. Same round trips.
    out = run(
        """
        import sys
        sys.modules["_datetime"] = None
        import datetime as dt
        assert not hasattr(dt, "datetime_CAPI")
        exec(__LOAD_NATIVE__)
        _native = m
        UTC = dt.timezone.utc
        values = [
            dt.datetime(2024, 1, 1, tzinfo=UTC),
            dt.datetime(2024, 1, 1, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(2600, 1, 1, tzinfo=UTC),
            dt.date(2024, 1, 2), dt.time(1, 2, 3),
            dt.time(1, 2, 3, 5, tzinfo=dt.timezone(dt.timedelta(hours=3))),
            dt.datetime(2020, 1, 1, 5, 6, 7, 8),
        ]
        for value in values:
            packed = _native.packb(value)
            back = _native.unpackb(packed)
            assert back == value and type(back) is type(value), (value, back)
        for bad in (b"\\xd6\\x01\\x07\\xe8\\x0d\\x01", b"\\xd7\\xff" + b"\\xff" * 8):
            try:
                _native.unpackb(bad)
            except _native.MalformedError:
                pass
            else:
                raise AssertionError(bad)
        print("ok")
        """.replace("__LOAD_NATIVE__", repr(LOAD_NATIVE))
    )
    assert out.strip() == "ok"
