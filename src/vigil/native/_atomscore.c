/*
 * The best atom window of a run of fixed bytes (matcher/body.py, _score_run).
 *
 * set_weights(table, width)
 *     `table` holds 256 native doubles, the weight of each byte value; `width` is the
 *     longest window.  Called once, before score_run.
 *
 * score_run(run) -> (score, window) | None
 *     A window's weight
 *     is p[i + width] - p[i] over the prefix sums of the run's weights, summed left to
 *     right (p[0] = 0.0, p[k + 1] = p[k] + w[run[k]]); the first heaviest window wins and
 *     its score adds 0.1 per distinct byte after the first.  When every byte weighs 1.0
 *     the first window wins with its length as weight.  A run of at most `width` bytes
 *     that holds a lighter byte gives None: its caller sums it.  Every operation is one
 *     IEEE double addition, subtraction or product, in the order of the Python it
 *     replaces, so the score is bit for bit the same.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

/* The byte weights and the window width, set once by set_weights(). */
static double weights[256];
static Py_ssize_t window_width = 0;

/* The score of a window: its weight plus 0.1 per distinct byte after the first.  The
 * bonus goes through a volatile so that the compiler cannot fuse the multiply and the add
 * (Python rounds each). */
static PyObject *window_result(PyObject *run, const unsigned char *data, Py_ssize_t n,
                               Py_ssize_t start, Py_ssize_t len, double weight)
{
    unsigned char seen[256];
    Py_ssize_t i, distinct = 0;
    volatile double bonus;
    PyObject *window;

    memset(seen, 0, sizeof seen);
    for (i = start; i < start + len; i++) {
        distinct += !seen[data[i]];
        seen[data[i]] = 1;
    }
    bonus = (double)(distinct - 1) * 0.1;
    if (start == 0 && len == n) {
        Py_INCREF(run);
        window = run;
    } else {
        window = PyBytes_FromStringAndSize((const char *)data + start, len);
        if (window == NULL)
            return NULL;
    }
    {
        PyObject *score = PyFloat_FromDouble(weight + bonus);
        PyObject *pair;

        if (score == NULL) {
            Py_DECREF(window);
            return NULL;
        }
        pair = PyTuple_Pack(2, score, window);
        Py_DECREF(score);
        Py_DECREF(window);
        return pair;
    }
}

static PyObject *set_weights(PyObject *self, PyObject *args)
{
    Py_buffer table;
    Py_ssize_t width;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*n:set_weights", &table, &width))
        return NULL;
    if (table.len != (Py_ssize_t)sizeof weights) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "table must hold 256 doubles");
        return NULL;
    }
    if (width <= 0) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "width must be positive");
        return NULL;
    }
    memcpy(weights, table.buf, sizeof weights);
    window_width = width;
    PyBuffer_Release(&table);
    Py_RETURN_NONE;
}

static PyObject *score_run(PyObject *self, PyObject *run)
{
    Py_ssize_t width = window_width, n, i;
    PyObject *result = NULL;
    double *prefix;
    const unsigned char *data;
    int plain = 1;

    (void)self;
    if (!PyBytes_Check(run)) {
        PyErr_SetString(PyExc_TypeError, "score_run() needs bytes");
        return NULL;
    }
    if (width <= 0) {
        PyErr_SetString(PyExc_RuntimeError, "set_weights() was not called");
        return NULL;
    }
    data = (const unsigned char *)PyBytes_AS_STRING(run);
    n    = PyBytes_GET_SIZE(run);
    for (i = 0; i < n && plain; i++)
        plain = weights[data[i]] == 1.0;
    if (plain) {
        /* every byte weighs 1.0: the first window wins, its weight exactly its length */
        Py_ssize_t len = n < width ? n : width;
        return window_result(run, data, n, 0, len, (double)len);
    }
    if (n <= width) /* one window: the caller sums it (Python's sum() rounds its own way) */
        Py_RETURN_NONE;
    prefix = PyMem_Malloc((size_t)(n + 1) * sizeof(double));
    if (prefix == NULL)
        return PyErr_NoMemory();
    {
        Py_ssize_t best_i = 0;
        double best;

        prefix[0] = 0.0;
        for (i = 0; i < n; i++)
            prefix[i + 1] = prefix[i] + weights[data[i]];
        best = prefix[width] - prefix[0];
        for (i = 1; i + width <= n; i++) {
            double s = prefix[i + width] - prefix[i];
            if (s > best) {
                best   = s;
                best_i = i;
            }
        }
        result = window_result(run, data, n, best_i, width, best);
    }
    PyMem_Free(prefix);
    return result;
}

static PyMethodDef methods[] = {
    {"set_weights", set_weights, METH_VARARGS,
     "set_weights(table, width): the 256 byte weights (doubles) and the window width."},
    {"score_run", score_run, METH_O,
     "score_run(run) -> (score, window), or None for a short run to sum."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_atomscore", "Atom window scoring.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__atomscore(void)
{
    return PyModule_Create(&module);
}
