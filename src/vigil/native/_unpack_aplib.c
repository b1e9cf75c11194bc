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

typedef struct {
    const uint8_t *src;
    size_t slen;
    size_t spos;
    uint8_t tag;
} bits;

/* Next tag bit, or -1: a new tag byte is never taken from the last input byte. */
static int bit(bits *b)
{
    uint8_t old = b->tag;
    b->tag = (uint8_t)(old << 1);
    if (!(old & 0x7f)) {
        if (b->slen == 0 || b->spos >= b->slen - 1)
            return -1;
        old = b->src[b->spos++];
        b->tag = (uint8_t)(old * 2 + 1);
    }
    return (old >> 7) & 1;
}

/* 1, then value = value * 2 + bit while the following bit is 1 (32-bit wrap). */
static int read_gamma(bits *b, uint32_t *out)
{
    uint32_t v = 1;
    int x, more;
    do {
        if ((x = bit(b)) < 0)
            return -1;
        v = v * 2 + (uint32_t)x;
        if ((more = bit(b)) < 0)
            return -1;
    } while (more);
    *out = v;
    return 0;
}

/* Returns 0 at the end marker, -1 on damage. */
static int decode(const uint8_t *src, size_t slen, uint8_t *dst, size_t dsize, size_t *consumed,
                  size_t *written)
{
    bits b = {src, slen, 0, 0x80};
    size_t at = 0;
    uint32_t back = 0, len, oldback = 0, v;
    int x, lostbit = 1;

    if (slen == 0 || dsize == 0)
        return -1;
    dst[at++] = src[b.spos++];

    for (;;) {
        if ((x = bit(&b)) < 0)
            return -1;
        if (!x) { /* literal */
            if (at >= dsize || b.spos >= slen)
                return -1;
            dst[at++] = src[b.spos++];
            lostbit = 1;
            continue;
        }
        if ((x = bit(&b)) < 0)
            return -1;
        if (x) {
            if ((x = bit(&b)) < 0)
                return -1;
            if (x) { /* short: 4-bit offset, one byte (offset 0: a zero byte) */
                lostbit = 1;
                len = 1;
                back = 0x10;
                while (back < 0x100) {
                    if ((x = bit(&b)) < 0)
                        return -1;
                    back = back * 2 + (uint32_t)x;
                }
                back &= 0xff;
                if (!back) {
                    if (at >= dsize)
                        return -1;
                    dst[at++] = 0;
                    continue;
                }
            } else { /* one byte: 7-bit offset, length 2 or 3; offset 0 ends */
                if (b.spos >= slen)
                    return -1;
                v = src[b.spos++];
                len = (v & 1) + 2;
                back = v >> 1;
                if (!back)
                    break;
                oldback = back;
                lostbit = 0;
            }
        } else { /* gamma-coded offset, or the last offset again */
            if (read_gamma(&b, &len) < 0)
                return -1;
            len = len - 1 - (uint32_t)lostbit;
            if (!len) {
                if (read_gamma(&b, &len) < 0)
                    return -1;
                back = oldback;
            } else {
                if (b.spos >= slen)
                    return -1;
                back = (uint32_t)src[b.spos] + ((len - 1) << 8);
                b.spos++;
                if (read_gamma(&b, &len) < 0)
                    return -1;
                if (back >= 0x7d00)
                    len++;
                if (back >= 0x500)
                    len++;
                if (back <= 0x7f)
                    len += 2;
                oldback = back;
            }
            lostbit = 0;
        }
        if (!len || (size_t)len > dsize - at || back > at)
            return -1;
        for (v = 0; v < len; v++, at++)
            dst[at] = dst[at - back];
    }
    *consumed = b.spos;
    *written = at;
    return 0;
}

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
        rc = decode((const uint8_t *)src.buf, (size_t)src.len, (uint8_t *)dst.buf + doff,
                    (size_t)dsize, &consumed, &written);
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

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_unpack_aplib", "The aPLib-style decoder of FSG and MEW.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__unpack_aplib(void)
{
    return PyModule_Create(&module);
}
