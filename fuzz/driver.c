/* libFuzzer driver for the decoders of fastapi_cachemate._native.
 *
 * It embeds Python, loads the extension (CM_FUZZ_NATIVE: the instrumented
 * build made by fuzz/Makefile), and feeds every fuzz input, as bytes, to the
 * target named by --target=NAME (libFuzzer ignores flags that start with
 * "--") or by the CM_FUZZ_TARGET environment variable. The targets, with the
 * exceptions each one may raise, are listed in fuzz/targets.py. Any other
 * exception aborts, so libFuzzer saves the input as a crash.
 *
 *   CM_FUZZ_SEEDS=DIR  write the target's seed corpus (valid encodings) to
 *                      DIR and exit.
 *   Exit status 77 without fuzzing: the target's function does not exist in
 *   this build yet (it is skipped, with a message).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The driver is a program, not the extension: these are set once. */
static PyObject *target_fn;
static PyObject *allowed;

static void
fail(const char *what)
{
    fprintf(stderr, "fuzz driver: %s\n", what);
    if (PyErr_Occurred()) {
        PyErr_Print();
    }
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *name = getenv("CM_FUZZ_TARGET");
    for (int i = 1; i < *argc; i++) {
        if (strncmp((*argv)[i], "--target=", 9) == 0) {
            name = (*argv)[i] + 9;
        }
    }
    if (name == NULL || *name == '\0') {
        fprintf(stderr,
                "fuzz driver: name a target with --target=NAME or "
                "CM_FUZZ_TARGET (see fuzz/targets.py)\n");
        exit(2);
    }
    Py_InitializeEx(0);
    PyObject *targets = PyImport_ImportModule("targets");
    if (targets == NULL) {
        fail("cannot import fuzz/targets.py (is fuzz/ on PYTHONPATH?)");
    }
    PyObject *loaded = PyObject_CallMethod(targets, "load", "s", name);
    if (loaded == NULL) {
        fail("targets.load() failed");
    }
    if (loaded == Py_None) {
        /* targets.load printed why: the function is not in this build */
        exit(77);
    }
    if (!PyTuple_Check(loaded) || PyTuple_GET_SIZE(loaded) != 2) {
        fail("targets.load() must return (callable, exception classes)");
    }
    target_fn = Py_NewRef(PyTuple_GET_ITEM(loaded, 0));
    allowed = Py_NewRef(PyTuple_GET_ITEM(loaded, 1));
    Py_DECREF(loaded);
    const char *seeds = getenv("CM_FUZZ_SEEDS");
    if (seeds != NULL && *seeds != '\0') {
        PyObject *r =
            PyObject_CallMethod(targets, "write_seeds", "ss", name, seeds);
        if (r == NULL) {
            fail("targets.write_seeds() failed");
        }
        Py_DECREF(r);
        exit(0);
    }
    Py_DECREF(targets);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PyObject *arg =
        PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
    if (arg == NULL) {
        fail("out of memory");
    }
    PyObject *result = PyObject_CallOneArg(target_fn, arg);
    Py_DECREF(arg);
    if (result == NULL) {
        if (!PyErr_ExceptionMatches(allowed)) {
            fail("unexpected exception");
        }
        PyErr_Clear();
    }
    Py_XDECREF(result);
    return 0;
}
