/*
 * The aPLib-style LZ decoder that FSG and MEW use (as libclamav's cli_unfsg/unmew read
 * it, quirks included: the tag byte reader never reads the last byte of the input, a
 * reused offset may be 0, lengths wrap at 32 bits).
 *
 * decode(src, dst, doff, dsize) decodes ``src`` into
 * dst[doff : doff + dsize] (a writable buffer), match offsets counted inside that window
 * only, and returns (bytes of src consumed, bytes written), or None when the stream is
 * damaged (truncated input, a match leaving the window). Every read and write is checked;
 * each step consumes input, so the work is bounded by the input size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_common.h"

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    Py_ssize_t doff, dsize;
    int rc = -1;
    size_t consumed = 0, written = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*nn", &src, &dst, &doff, &dsize))
        return NULL;
    if (doff >= 0 && dsize >= 0 && doff <= dst.len && dsize <= dst.len - doff) {
        Py_BEGIN_ALLOW_THREADS
        rc = vg_aplib_decode((const uint8_t *)src.buf, (size_t)src.len,
                             (uint8_t *)dst.buf + doff, (size_t)dsize, &consumed, &written);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (rc < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(nn)", (Py_ssize_t)consumed, (Py_ssize_t)written);
}

static PyMethodDef methods[] = {
    {"decode", py_decode, METH_VARARGS,
     "decode(src, dst, doff, dsize) -> (consumed, written) | None: aPLib-style LZ "
     "(FSG/MEW) into dst[doff:doff+dsize]."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_aplib, "The aPLib-style decoder of FSG and MEW.", methods)
