/*
 * UPX's NRV2B, NRV2D and NRV2E decompressors (the 32-bit little-endian bit-buffer
 * variants that UPX uses for Win32 PE files).
 *
 * Each function decodes ``src`` into a caller-supplied writable buffer ``dst`` in place,
 * writing at most ``dsize`` bytes (and never past the buffer), and returns the number of
 * bytes produced when the end marker is reached, or -1 when the stream is damaged
 * (truncated input, a match reaching before the start of the output or past ``dsize``,
 * absurd lengths). On failure ``dst`` keeps whatever was written before the error: the
 * PE rebuild step reproduces libclamav, which reuses one buffer across several attempts.
 *
 * Every read of ``src`` and every write of ``dst`` is checked; each loop iteration
 * consumes at least one input bit, so the work is bounded by the input size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_common.h"

typedef struct {
    const uint8_t *src;
    size_t slen;
    size_t spos;
    uint32_t bits; /* bit buffer with a sentinel bit below the pending bits */
} reader;

/* Next bit, or -1 when a refill is needed and fewer than 4 bytes remain. */
static int next_bit(reader *r)
{
    uint32_t cur = r->bits;
    if (cur & 0x7fffffffu) {
        r->bits = cur << 1;
        return (int)(cur >> 31);
    }
    if (r->spos > r->slen || r->slen - r->spos < 4)
        return -1;
    cur = vg_rd32(r->src + r->spos);
    r->spos += 4;
    r->bits = (cur << 1) | 1u;
    return (int)(cur >> 31);
}

/* Reads a variable-length number: value = value * 2 + bit, repeated. Returns 0 on
 * success, -1 when the input ends. ``value`` saturates to avoid overflow (callers
 * reject anything that large). */
#define BIT_OR_FAIL(var)          \
    do {                          \
        (var) = next_bit(r);      \
        if ((var) < 0) return -1; \
    } while (0)

#define BIG 0x100000000ull

/* Copies ``len`` bytes from ``back`` bytes behind the write position. */
static int copy_match(uint8_t *dst, size_t dsize, size_t *dpos, uint64_t back, uint64_t len)
{
    size_t i, at = *dpos;
    if (back == 0 || back > at || len > dsize || at + len > dsize)
        return -1;
    for (i = 0; i < len; i++)
        dst[at + i] = dst[at - back + i];
    *dpos = at + len;
    return 0;
}

static int literal(reader *r, uint8_t *dst, size_t dsize, size_t *dpos)
{
    if (r->spos >= r->slen || *dpos >= dsize)
        return -1;
    dst[(*dpos)++] = r->src[r->spos++];
    return 0;
}

/* A variable-length number: start at 1, then value = value * 2 + bit until a 1 bit ends
 * it. ``mode`` 1 (the NRV2D/NRV2E offset code) also takes, after each 0 bit,
 * value = (value - 1) * 2 + bit. 0, or -1 when the input ends or the value reaches BIG. */
static int gamma_code(reader *r, int mode, uint64_t *value)
{
    int bit;
    uint64_t v = 1;
    for (;;) {
        BIT_OR_FAIL(bit);
        v = v * 2 + (uint64_t)bit;
        if (v >= BIG)
            return -1;
        BIT_OR_FAIL(bit);
        if (bit)
            break;
        if (mode) {
            v -= 1;
            BIT_OR_FAIL(bit);
            v = v * 2 + (uint64_t)bit;
            if (v >= BIG)
                return -1;
        }
    }
    *value = v;
    return 0;
}

/* The long-length code shared by the three methods. */
static int long_length(reader *r, uint64_t *value)
{
    return gamma_code(r, 0, value);
}

/* Reads the offset's high part and its low byte. ``mode`` 0 is NRV2B's gamma code,
 * 1 is the NRV2D/NRV2E code. Returns 1 for "reuse the last offset", 0 for a new
 * offset in *raw (the value before the low byte's inversion), 2 at the end marker,
 * -1 on error. */
static int read_offset(reader *r, int mode, uint64_t *raw)
{
    uint64_t v;
    if (gamma_code(r, mode, &v) < 0)
        return -1;
    if (v < 3)
        return 1;
    v -= 3;
    if (v >= 0x1000000u || r->spos >= r->slen)
        return -1;
    v = (v << 8) | r->src[r->spos++];
    if (v == 0xffffffffu)
        return 2;
    *raw = v;
    return 0;
}

static Py_ssize_t decode(int method, const uint8_t *src, size_t slen, uint8_t *dst, size_t dsize)
{
    reader rd = {src, slen, 0, 0};
    reader *r = &rd;
    size_t dpos = 0;
    uint64_t last = 1, len, raw;
    int bit, kind, flag;

    for (;;) {
        for (;;) {
            BIT_OR_FAIL(bit);
            if (!bit)
                break;
            if (literal(r, dst, dsize, &dpos) < 0)
                return -1;
        }
        kind = read_offset(r, method != 'b', &raw);
        if (kind < 0)
            return -1;
        if (kind == 2)
            return (Py_ssize_t)dpos;
        if (method == 'b') {
            if (kind == 0)
                last = raw + 1;
            BIT_OR_FAIL(bit);
            len = (uint64_t)bit;
            BIT_OR_FAIL(bit);
            len = len * 2 + (uint64_t)bit;
            if (!len) {
                if (long_length(r, &len) < 0)
                    return -1;
                len += 2;
            }
            len += (last > 0xd00) + 1;
        } else {
            if (kind == 0) {
                flag = (int)(~raw & 1);
                last = (raw >> 1) + 1;
            } else {
                BIT_OR_FAIL(flag);
            }
            if (method == 'd') {
                BIT_OR_FAIL(bit);
                len = (uint64_t)flag * 2 + (uint64_t)bit;
                if (!len) {
                    if (long_length(r, &len) < 0)
                        return -1;
                    len += 2;
                }
                len += (last > 0x500) + 1;
            } else {
                if (flag) {
                    BIT_OR_FAIL(bit);
                    len = 1 + (uint64_t)bit;
                } else {
                    BIT_OR_FAIL(bit);
                    if (bit) {
                        BIT_OR_FAIL(bit);
                        len = 3 + (uint64_t)bit;
                    } else {
                        if (long_length(r, &len) < 0)
                            return -1;
                        len += 3;
                    }
                }
                len += (last > 0x500) + 1;
            }
        }
        if (copy_match(dst, dsize, &dpos, last, len) < 0)
            return -1;
    }
}


/* ---- helpers for rebuilding the PE after decompression (libclamav's pefromupx) ---- */

/* libclamav's checkpe: a PE signature, a non-zero SectionAlignment and section count,
 * and the whole section table inside the buffer. */
static int plausible_pe(const uint8_t *dst, size_t dsize, size_t at)
{
    unsigned count;
    if (!vg_inside(dsize, at, 0xf8) || vg_rd32(dst + at) != 0x4550 || !vg_rd32(dst + at + 0x38))
        return 0;
    count = (unsigned)dst[at + 6] | (unsigned)dst[at + 7] << 8;
    return count && vg_inside(dsize, (uint64_t)at + 0xf8, (uint64_t)count * 0x28);
}

/* Walks UPX's compressed import table at ``start`` (entries of two 32-bit words, each
 * followed by NUL-terminated strings up to an empty one, the table ended by a zero word)
 * and returns the offset 4 bytes past its end, where UPX keeps the original PE header,
 * or -1 when the walk leaves the buffer. */
static Py_ssize_t after_imports(const uint8_t *dst, size_t dsize, size_t at)
{
    const uint8_t *zero;
    while (vg_inside(dsize, at, 8) && vg_rd32(dst + at)) {
        at += 8;
        while (vg_inside(dsize, at, 2) && dst[at]) {
            at++;
            if (at + 1 >= dsize)
                return -1;
            zero = memchr(dst + at, 0, dsize - 1 - at);
            if (!zero)
                return -1;
            at = (size_t)(zero - dst) + 1;
        }
        at++;
    }
    return (Py_ssize_t)(at + 4);
}

/* The (dst, dsize, at) arguments of the upx_* helpers, dsize clamped to the buffer. */
static int parse_dst(PyObject *args, Py_buffer *dst, Py_ssize_t *dsize, Py_ssize_t *at)
{
    if (!PyArg_ParseTuple(args, "y*nn", dst, dsize, at))
        return 0;
    if (*dsize < 0 || *dsize > dst->len)
        *dsize = dst->len;
    return 1;
}

static PyObject *upx_header_after_imports(PyObject *self, PyObject *args)
{
    Py_buffer dst;
    Py_ssize_t dsize, start, result = -1;
    (void)self;
    if (!parse_dst(args, &dst, &dsize, &start))
        return NULL;
    if (start >= 0 && start < dsize) {
        Py_BEGIN_ALLOW_THREADS
        result = after_imports((const uint8_t *)dst.buf, (size_t)dsize, (size_t)start);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&dst);
    return PyLong_FromSsize_t(result);
}

static PyObject *upx_find_header(PyObject *self, PyObject *args)
{
    Py_buffer dst;
    Py_ssize_t dsize, at;
    (void)self;
    if (!parse_dst(args, &dst, &dsize, &at))
        return NULL;
    if (at >= dsize) /* no header can start past the data: never walk down from beyond it */
        at = dsize - 1;
    Py_BEGIN_ALLOW_THREADS
    for (; at > 0; at--)
        if (plausible_pe((const uint8_t *)dst.buf, (size_t)dsize, (size_t)at))
            break;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    return PyLong_FromSsize_t(at > 0 ? at : 0);
}

static PyObject *upx_check_header(PyObject *self, PyObject *args)
{
    Py_buffer dst;
    Py_ssize_t dsize, at;
    int ok = 0;
    (void)self;
    if (!parse_dst(args, &dst, &dsize, &at))
        return NULL;
    if (at >= 0)
        ok = plausible_pe((const uint8_t *)dst.buf, (size_t)dsize, (size_t)at);
    PyBuffer_Release(&dst);
    return PyBool_FromLong(ok);
}

static PyObject *run(int method, PyObject *args)
{
    Py_buffer src, dst;
    Py_ssize_t dsize, result;

    if (!PyArg_ParseTuple(args, "y*w*n", &src, &dst, &dsize))
        return NULL;
    if (dsize < 0 || dsize > dst.len)
        dsize = dst.len;
    Py_BEGIN_ALLOW_THREADS
    result = decode(method, (const uint8_t *)src.buf, (size_t)src.len, (uint8_t *)dst.buf,
                    (size_t)dsize);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return PyLong_FromSsize_t(result);
}

static PyObject *nrv2b(PyObject *self, PyObject *args)
{
    (void)self;
    return run('b', args);
}

static PyObject *nrv2d(PyObject *self, PyObject *args)
{
    (void)self;
    return run('d', args);
}

static PyObject *nrv2e(PyObject *self, PyObject *args)
{
    (void)self;
    return run('e', args);
}

static PyMethodDef methods[] = {
    {"nrv2b", nrv2b, METH_VARARGS,
     "nrv2b(src, dst, dsize) -> int: decode into dst[:dsize]; bytes written or -1."},
    {"nrv2d", nrv2d, METH_VARARGS,
     "nrv2d(src, dst, dsize) -> int: decode into dst[:dsize]; bytes written or -1."},
    {"nrv2e", nrv2e, METH_VARARGS,
     "nrv2e(src, dst, dsize) -> int: decode into dst[:dsize]; bytes written or -1."},
    {"upx_header_after_imports", upx_header_after_imports, METH_VARARGS,
     "upx_header_after_imports(dst, dsize, start) -> int: offset 4 past UPX's import "
     "table at start, or -1."},
    {"upx_find_header", upx_find_header, METH_VARARGS,
     "upx_find_header(dst, dsize, start) -> int: the highest offset in (0, start] holding "
     "a plausible PE header, or 0."},
    {"upx_check_header", upx_check_header, METH_VARARGS,
     "upx_check_header(dst, dsize, at) -> bool: whether a plausible PE header is at at."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_nrv, "UPX NRV2B/NRV2D/NRV2E decompressors (LE32 bit buffer).", methods)
