/* A uwsgi packet's variable block decoded in one pass.
 *
 * The loop over nginx's variables is most of what a uwsgi request costs the
 * server in Python (about 40% of its bytecode).  uwsgi.py has the same loop
 * in Python (decode_vars_python), used where this was not built; the tests
 * hold the two to the same answers, errors included. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
decode_vars(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *data = view.buf;
    const Py_ssize_t end = view.len;
    Py_ssize_t at = 0, pairs = 0;
    const char *error = NULL;
    PyObject *variables = PyDict_New();
    if (variables == NULL) {
        goto fail;
    }
    while (at < end) {
        /* Both sizes must lie inside the block, then the value must end inside it. */
        if (end - at < 2) {
            error = "a variable's size runs past the packet";
            break;
        }
        Py_ssize_t key_at = at + 2;
        Py_ssize_t value_size_at = key_at + (data[at] | (data[at + 1] << 8));
        if (value_size_at + 2 > end) {
            error = "a variable's size runs past the packet";
            break;
        }
        Py_ssize_t value_at = value_size_at + 2;
        Py_ssize_t value_end =
            value_at + (data[value_size_at] | (data[value_size_at + 1] << 8));
        if (value_end > end) {
            error = "the last value runs past the packet";
            break;
        }
        const char *bytes = (const char *)data;
        PyObject *key = PyUnicode_DecodeLatin1(bytes + key_at, value_size_at - key_at, NULL);
        if (key == NULL) {
            goto fail;
        }
        PyObject *value = PyUnicode_DecodeLatin1(bytes + value_at, value_end - value_at, NULL);
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        int failed = PyDict_SetItem(variables, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (failed) {
            goto fail;
        }
        at = value_end;
        pairs++;
    }
    PyBuffer_Release(&view);
    if (error != NULL) {
        Py_DECREF(variables);
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return Py_BuildValue("(Nn)", variables, pairs);
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(variables);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_vars", decode_vars, METH_O,
     "decode_vars(block) -> (variables, pairs): a uwsgi variable block as a dict of\n"
     "latin-1 strs, and how many pairs it held (more than the dict's size: a key\n"
     "repeated).  ValueError names a size that runs past the block."},
    {NULL, NULL, 0, NULL},
};

/* No state of its own, and each call works only on objects it holds: it needs no
   GIL, so a free-threaded build (3.13t) keeps running without one on import. */
static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_uwsgi_vars", NULL, 0, methods, slots,
};

PyMODINIT_FUNC
PyInit__uwsgi_vars(void)
{
    return PyModuleDef_Init(&module);
}
