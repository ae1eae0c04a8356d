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


SUBINTERPRETER_CODE = """
import fastapi_cachemate._native as m
obj = {"k": [1, "v", 2.5]}
assert m.unpackb(m.packb(obj)) == obj
try:
    m.unpackb(b"\\xc1")
except m.MalformedError:
    pass
else:
    raise AssertionError("no MalformedError")
"""


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
