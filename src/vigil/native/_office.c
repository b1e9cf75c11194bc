/*
 * Byte-level decoders for Office documents that no C-backed Python library offers:
 *
 *   ovba_decompress(data, offset, limit) -> bytes
 *       The MS-OVBA "CompressedContainer" (VBA dir stream and module source): a 0x01
 *       signature byte, then chunks of at most 4096 decompressed bytes, each either raw or
 *       a sequence of flag bytes governing 8 tokens (literal byte or 16-bit copy token
 *       whose offset/length split depends on the position inside the chunk).
 *
 *   vba_normalize(data) -> bytes
 *       Canonical form of VBA source used for signature matching: letters outside string
 *       literals lower-cased, runs of blanks/tabs collapsed to one space, and " _" line
 *       continuations joined.
 *
 * Both check every read and write against the buffer bounds, stop at `limit` output
 * bytes, release the GIL around the loop and return the decodable prefix of damaged input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

#define CHUNK_MAX 4096

typedef struct {
    unsigned char *buf;
    size_t len;
    size_t cap;
    size_t limit;
    int failed; /* allocation failure */
} outbuf_t;

static int out_reserve(outbuf_t *o, size_t extra)
{
    size_t need, cap;
    unsigned char *p;

    if (o->len + extra <= o->cap) {
        return 1;
    }
    need = o->len + extra;
    cap  = o->cap ? o->cap : 8192;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > o->limit + CHUNK_MAX) {
        cap = o->limit + CHUNK_MAX;
    }
    if (cap < need) {
        o->failed = 1;
        return 0;
    }
    p = (unsigned char *)realloc(o->buf, cap);
    if (p == NULL) {
        o->failed = 1;
        return 0;
    }
    o->buf = p;
    o->cap = cap;
    return 1;
}

/* Decode one compressed chunk body in[0..n) appending to o; returns 0 on damage. */
static int ovba_chunk(const unsigned char *in, size_t n, outbuf_t *o)
{
    size_t pos         = 0;
    size_t chunk_start = o->len;

    if (!out_reserve(o, CHUNK_MAX)) {
        return 0;
    }
    while (pos < n) {
        unsigned flags = in[pos++];
        int bit;
        for (bit = 0; bit < 8 && pos < n; bit++) {
            size_t done = o->len - chunk_start;
            if (done >= CHUNK_MAX) {
                return 1; /* chunk full: trailing bytes are padding */
            }
            if (!(flags & (1u << bit))) {
                o->buf[o->len++] = in[pos++];
            } else {
                unsigned token, bits = 4, length_mask, offset, length;
                size_t k, src;
                if (pos + 2 > n) {
                    return 0;
                }
                token = (unsigned)in[pos] | ((unsigned)in[pos + 1] << 8);
                pos += 2;
                while (((size_t)1 << bits) < done) {
                    bits++;
                }
                if (bits > 12) {
                    bits = 12;
                }
                length_mask = 0xFFFFu >> bits;
                offset      = (token >> (16 - bits)) + 1;
                length      = (token & length_mask) + 3;
                if (offset > done) {
                    return 0;
                }
                if (done + length > CHUNK_MAX) {
                    length = (unsigned)(CHUNK_MAX - done);
                }
                src = o->len - offset;
                for (k = 0; k < length; k++) {
                    o->buf[o->len + k] = o->buf[src + k]; /* may overlap: byte by byte */
                }
                o->len += length;
            }
        }
    }
    return 1;
}

static void ovba_run(const unsigned char *data, size_t size, size_t start, outbuf_t *o)
{
    size_t pos = start + 1; /* signature byte checked by the caller */

    while (pos + 2 <= size && o->len < o->limit) {
        unsigned header = (unsigned)data[pos] | ((unsigned)data[pos + 1] << 8);
        size_t chunk_size = (header & 0x0FFFu) + 3; /* header included */
        size_t body       = chunk_size - 2;
        if (((header >> 12) & 0x7u) != 0x3u) {
            return;
        }
        pos += 2;
        if (header & 0x8000u) {
            if (body > size - pos) {
                body = size - pos; /* truncated: decode what is there */
            }
            if (!ovba_chunk(data + pos, body, o)) {
                return;
            }
            pos += body;
        } else {
            size_t raw = CHUNK_MAX;
            if (raw > size - pos) {
                raw = size - pos;
            }
            if (!out_reserve(o, raw)) {
                return;
            }
            memcpy(o->buf + o->len, data + pos, raw);
            o->len += raw;
            pos += raw;
            if (raw < CHUNK_MAX) {
                return;
            }
        }
    }
}

static PyObject *finish(outbuf_t *o)
{
    PyObject *res;
    size_t n = o->len < o->limit ? o->len : o->limit;

    if (o->failed && o->len == 0) {
        free(o->buf);
        return PyErr_NoMemory();
    }
    res = PyBytes_FromStringAndSize(o->buf ? (const char *)o->buf : "", (Py_ssize_t)n);
    free(o->buf);
    return res;
}

static PyObject *py_ovba_decompress(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t offset, limit;
    outbuf_t o = {NULL, 0, 0, 0, 0};
    (void)self;

    if (!PyArg_ParseTuple(args, "y*nn", &view, &offset, &limit)) {
        return NULL;
    }
    if (offset < 0 || limit < 0 || offset >= view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "offset outside the data");
        return NULL;
    }
    if (((const unsigned char *)view.buf)[offset] != 0x01) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "no CompressedContainer signature");
        return NULL;
    }
    o.limit = (size_t)limit;
    Py_BEGIN_ALLOW_THREADS;
    ovba_run((const unsigned char *)view.buf, (size_t)view.len, (size_t)offset, &o);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&view);
    return finish(&o);
}

enum { N_NORMAL, N_STRING, N_UNDERSCORE, N_UNDERSCORE_CR, N_SPACE };

static void normalize_run(const unsigned char *in, size_t n, outbuf_t *o)
{
    int state = N_NORMAL;
    size_t i;
    unsigned char *out = o->buf;
    size_t len         = 0;

    for (i = 0; i < n && len < o->limit; i++) {
        unsigned char c = in[i];
        switch (c) {
            case '"':
                if (state == N_STRING) {
                    state = N_NORMAL;
                } else if (state == N_NORMAL || state == N_UNDERSCORE || state == N_SPACE) {
                    state = N_STRING;
                }
                out[len++] = c;
                break;
            case '_':
                if (state == N_SPACE) {
                    state = N_UNDERSCORE;
                }
                out[len++] = c;
                break;
            case '\r':
                if (state == N_UNDERSCORE) {
                    state = N_UNDERSCORE_CR;
                }
                out[len++] = c;
                break;
            case '\n':
                if (state == N_UNDERSCORE && len >= 1) {
                    len -= 1; /* drop the "_" of a line continuation */
                    state = N_SPACE;
                } else if (state == N_UNDERSCORE_CR && len >= 2) {
                    len -= 2; /* drop "_\r" */
                    state = N_SPACE;
                } else {
                    out[len++] = c;
                }
                break;
            case '\t':
            case ' ':
                if (state != N_SPACE) {
                    out[len++] = ' ';
                }
                if (state == N_NORMAL || state == N_UNDERSCORE) {
                    state = N_SPACE;
                }
                break;
            default:
                if (state != N_STRING && state != N_UNDERSCORE_CR) {
                    out[len++] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
                    state      = N_NORMAL;
                } else {
                    out[len++] = c;
                }
                break;
        }
    }
    o->len = len;
}

static PyObject *py_vba_normalize(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t limit;
    outbuf_t o = {NULL, 0, 0, 0, 0};
    (void)self;

    if (!PyArg_ParseTuple(args, "y*n", &view, &limit)) {
        return NULL;
    }
    if (limit < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "negative limit");
        return NULL;
    }
    /* the output is never longer than the input */
    o.limit = (size_t)limit < (size_t)view.len ? (size_t)limit : (size_t)view.len;
    o.buf   = (unsigned char *)malloc(o.limit + 1);
    if (o.buf == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    o.cap = o.limit + 1;
    Py_BEGIN_ALLOW_THREADS;
    normalize_run((const unsigned char *)view.buf, (size_t)view.len, &o);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&view);
    return finish(&o);
}

static PyMethodDef methods[] = {
    {"ovba_decompress", py_ovba_decompress, METH_VARARGS,
     "ovba_decompress(data, offset, limit) -> bytes: decode an MS-OVBA CompressedContainer "
     "starting at offset; at most limit bytes; the decodable prefix of damaged input."},
    {"vba_normalize", py_vba_normalize, METH_VARARGS,
     "vba_normalize(data, limit) -> bytes: VBA source in the canonical form used for "
     "signature matching (lower case outside strings, blanks collapsed, continuations "
     "joined)."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_office, "Office document decoders (MS-OVBA, VBA normalisation).", methods)
