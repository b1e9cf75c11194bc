/*
 * PDF stream decoders that need a byte-level loop: LZWDecode and RunLengthDecode.
 *
 * lzw_decode(data, early_change, limit) -> (bytes, damaged)
 *     Variable-width (9..12 bit, MSB first) LZW with clear code 256 and end code 257, as
 *     PDF and TIFF use it.  early_change != 0 widens codes one entry early (the PDF
 *     default).  Decoding stops at the end code, at the end of the input, after `limit`
 *     + 1 output bytes, or at the first invalid code; `damaged` is True in the last case
 *     and the bytes are the decodable prefix.
 *
 * rl_decode(data, limit) -> (bytes, damaged)
 *     PackBits-style RunLengthDecode: n < 128 copies n + 1 literal bytes, n > 128 repeats
 *     the next byte 257 - n times, 128 ends the data.  `damaged` is True when a run is cut
 *     short by the end of the input.
 *
 * Every read and write is checked against its buffer; the GIL is released while decoding.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

#define LZW_CLEAR 256
#define LZW_EOD 257
#define LZW_FIRST 258
#define LZW_TABLE 4096
#define LZW_MAXBITS 12

typedef struct {
    uint16_t prefix[LZW_TABLE];
    unsigned char suffix[LZW_TABLE];
    unsigned char first[LZW_TABLE];
    uint16_t length[LZW_TABLE];
} lzw_table;

/* Writes the string of `code` (known to be < next) and returns 0 once the cap is hit. */
static int lzw_emit(const lzw_table *t, unsigned code, vg_out *o)
{
    unsigned char tmp[LZW_TABLE];
    size_t n = t->length[code];
    size_t i = n;

    if (n == 0 || n > LZW_TABLE)
        return 0;
    while (i > 0) {
        tmp[--i] = t->suffix[code];
        code     = t->prefix[code];
        if (i > 0 && code >= LZW_TABLE)
            return 0;
    }
    return vg_out_write(o, tmp, 0, n);
}

static int lzw_run(const unsigned char *in, size_t inlen, int early, vg_out *o)
{
    lzw_table *t;
    vg_bits b        = {in, inlen, 0, 0, 0, 0}; /* codes MSB-first */
    unsigned width   = 9;
    unsigned next    = LZW_FIRST;
    int prev         = -1;
    int damaged      = 0;
    unsigned i;

    t = (lzw_table *)malloc(sizeof(*t));
    if (t == NULL) {
        o->failed = 1;
        return 1;
    }
    for (i = 0; i < 256; i++) {
        t->prefix[i] = 0;
        t->suffix[i] = (unsigned char)i;
        t->first[i]  = (unsigned char)i;
        t->length[i] = 1;
    }
    for (; i < LZW_TABLE; i++)
        t->length[i] = 0;

    for (;;) {
        unsigned code = vg_bits_msb(&b, width);
        if (b.error)
            goto done;

        if (code == LZW_CLEAR) {
            next  = LZW_FIRST;
            width = 9;
            prev  = -1;
            continue;
        }
        if (code == LZW_EOD)
            break;
        if (prev < 0) {
            if (code > 255) {
                damaged = 1;
                break;
            }
            if (!lzw_emit(t, code, o))
                break;
            prev = (int)code;
            continue;
        }
        if (code > next || (code == next && next >= LZW_TABLE)) {
            damaged = 1;
            break;
        }
        if (next < LZW_TABLE) {
            /* the new entry: previous string + first byte of the current one (KwKwK when
             * code == next, whose first byte is that of the previous string) */
            unsigned char fc = (code < next) ? t->first[code] : t->first[prev];
            t->prefix[next]  = (uint16_t)prev;
            t->suffix[next]  = fc;
            t->first[next]   = t->first[prev];
            t->length[next]  = (uint16_t)(t->length[prev] + 1);
            next++;
        }
        if (!lzw_emit(t, code, o))
            break;
        prev = (int)code;
        if (next + (early ? 1u : 0u) >= (1u << width) && width < LZW_MAXBITS)
            width++;
    }
done:
    free(t);
    return damaged;
}

static int rl_run(const unsigned char *in, size_t inlen, vg_out *o)
{
    size_t pos = 0;

    while (pos < inlen) {
        unsigned n = in[pos++];
        if (n < 128) {
            size_t run = (size_t)n + 1;
            if (run > inlen - pos)
                return 1;
            if (!vg_out_write(o, in + pos, 0, run))
                return 0;
            pos += run;
        } else if (n > 128) {
            if (pos >= inlen)
                return 1;
            if (!vg_out_write(o, NULL, in[pos], 257 - n))
                return 0;
            pos++;
        } else {
            break;
        }
    }
    return 0;
}

static PyObject *finish(vg_out *o, int damaged)
{
    PyObject *bytes = vg_out_finish(o);
    if (bytes == NULL)
        return NULL;
    return Py_BuildValue("(NO)", bytes, damaged ? Py_True : Py_False);
}

static int cap_from_limit(Py_ssize_t limit, size_t *cap)
{
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "limit must not be negative");
        return 0;
    }
    /* limit + 1 bytes, so that the caller can tell an oversized result */
    *cap = (size_t)limit + 1;
    return 1;
}

static PyObject *lzw_decode(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int early;
    Py_ssize_t limit;
    vg_out o = {NULL, 0, 0, 0, 0};
    int damaged;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*pn", &view, &early, &limit))
        return NULL;
    if (!cap_from_limit(limit, &o.cap)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    damaged = lzw_run((const unsigned char *)view.buf, (size_t)view.len, early, &o);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return finish(&o, damaged);
}

static PyObject *rl_decode(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t limit;
    vg_out o = {NULL, 0, 0, 0, 0};
    int damaged;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*n", &view, &limit))
        return NULL;
    if (!cap_from_limit(limit, &o.cap)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    damaged = rl_run((const unsigned char *)view.buf, (size_t)view.len, &o);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return finish(&o, damaged);
}

static PyMethodDef methods[] = {
    {"lzw_decode", lzw_decode, METH_VARARGS,
     "lzw_decode(data, early_change, limit) -> (bytes, damaged): PDF/TIFF LZW."},
    {"rl_decode", rl_decode, METH_VARARGS,
     "rl_decode(data, limit) -> (bytes, damaged): PDF RunLengthDecode."},
    {NULL, NULL, 0, NULL}};

VG_MODULE(_lzw, "PDF LZW and RunLength decoders.", methods)
