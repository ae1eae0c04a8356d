"""benchmarks/callgrind_hit.py's reader of callgrind output files (name compression, the
inclusive cost lines of calls, which are not the caller's own)."""

from __future__ import annotations

from benchmarks.callgrind_hit import parse_callgrind

SAMPLE = """\
version: 1
creator: callgrind-3.19.0
events: Ir

ob=(1) /usr/bin/python3.11
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50
cob=(2) /x/fastapi_cachemate/_native.cpython-311-x86_64-linux-gnu.so
cfl=(2) entry.c
cfn=(2) parse_entry
calls=3 40
* 900
ob=(2)
fl=(2)
fn=(2)
40 600
-5 300
ob=(1)
fn=(1)
12 7
"""


def test_self_costs_per_object_and_function() -> None:
    costs = parse_callgrind(SAMPLE)
    assert costs == {
        ("python (the interpreter)", "_PyEval_EvalFrameDefault"): 157,
        ("_native (our C kernels)", "parse_entry"): 900,
    }
