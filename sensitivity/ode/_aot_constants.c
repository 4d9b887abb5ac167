/* Python constants of the ahead-of-time kernels, unpickled once (sensitivity/ode/aot.py).
 *
 * Compiled code refers to Python objects (the class of each array it returns, exception
 * classes) through pickled blobs. numba's ahead-of-time runtime unpickles a blob at every
 * use: twice per solve, for the two arrays a kernel returns, about a microsecond of a
 * 20-microsecond solve. These objects never change, so the first result of each blob is
 * kept, by the blob's address, as numba's JIT runtime does.
 */
#include <Python.h>

/* numba's helper, linked into the same extension module */
PyObject *numba_unpickle(const char *data, int n, const char *hashed);

PyObject *
sensitivity_unpickle_once(const char *data, int n, const char *hashed)
{
    static PyObject *kept = NULL; /* {blob address: object} */
    PyObject *key, *obj;

    if (kept == NULL && (kept = PyDict_New()) == NULL)
        return NULL;
    key = PyLong_FromVoidPtr((void *)data);
    if (key == NULL)
        return NULL;
    obj = PyDict_GetItemWithError(kept, key); /* borrowed */
    if (obj != NULL) {
        Py_INCREF(obj); /* the caller owns a reference, as from numba_unpickle */
    }
    else if (!PyErr_Occurred()) {
        obj = numba_unpickle(data, n, hashed);
        if (obj != NULL && PyDict_SetItem(kept, key, obj) < 0) {
            Py_DECREF(obj);
            obj = NULL;
        }
    }
    Py_DECREF(key);
    return obj;
}
