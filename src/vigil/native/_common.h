/*
 * Pieces shared by the C decoders in this directory. setup.py builds every ``_*.c`` as an
 * extension module of its own, so the shared code lives in this header as ``static inline``
 * functions (each module gets its own copy; the unused ones cost nothing and raise no
 * warnings).
 *
 *  - little-endian words, byte rotations and bounds checks over a buffer;
 *  - vg_bits: a bounds-checked bit reader (LSB- or MSB-first) with a sticky error flag;
 *  - the aPLib-style tag-bit reader and LZ decoder of FSG/MEW (libclamav's quirks kept);
 *  - vg_out: a growable output buffer capped at a byte limit, and its conversion to bytes;
 *  - VG_MODULE: the PyModuleDef and PyInit function of a module with plain functions.
 *
 * Include it after <Python.h>.
 */
#ifndef VIGIL_NATIVE_COMMON_H
#define VIGIL_NATIVE_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ words and bounds */

static inline uint32_t vg_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void vg_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t vg_bswap32(uint32_t v)
{
    return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}

/* [at, at+len) non-empty and inside [0, size) (libclamav's CLI_ISCONTAINED) */
static inline int vg_inside(uint64_t size, uint64_t at, uint64_t len)
{
    return len > 0 && len <= size && at < size && at + len <= size;
}

/* The same for a signed offset (pointer arithmetic that may point before the buffer). */
static inline int vg_inside_signed(uint64_t size, int64_t at, uint64_t len)
{
    return at >= 0 && vg_inside(size, (uint64_t)at, len);
}

static inline uint8_t vg_rol8(uint8_t v, unsigned n)
{
    n &= 7;
    return (uint8_t)((v << n) | (v >> ((8 - n) & 7)));
}

static inline uint8_t vg_ror8(uint8_t v, unsigned n)
{
    n &= 7;
    return (uint8_t)((v >> n) | (v << ((8 - n) & 7)));
}

/* ------------------------------------------------------------------ bit reader */

typedef struct {
    const uint8_t *src;
    size_t len;
    size_t pos;   /* next byte to load */
    uint64_t acc; /* pending bits: LSB-first readers keep the next one in bit 0, MSB-first
                   * ones the next one highest among the low ``cnt`` bits */
    unsigned cnt; /* pending bits */
    int error;    /* a read ran past the end of the input (sticky) */
} vg_bits;

/* Loads whole bytes (LSB-first) until ``want`` bits are pending or the input ends. */
static inline void vg_bits_fill_lsb(vg_bits *b, unsigned want)
{
    while (b->cnt < want && b->pos < b->len) {
        b->acc |= (uint64_t)b->src[b->pos++] << b->cnt;
        b->cnt += 8;
    }
}

/* ``n`` (<= 32) bits least significant first; 0 and ``error`` set when the input ends
 * first (the bytes that were there are loaded, none is consumed). */
static inline uint32_t vg_bits_lsb(vg_bits *b, unsigned n)
{
    uint32_t v;
    vg_bits_fill_lsb(b, n);
    if (b->cnt < n) {
        b->error = 1;
        return 0;
    }
    v = (uint32_t)(b->acc & ((1ull << n) - 1u));
    b->acc >>= n;
    b->cnt -= n;
    return v;
}

/* ``n`` (<= 32) bits most significant first; 0 and ``error`` set when the input ends. */
static inline uint32_t vg_bits_msb(vg_bits *b, unsigned n)
{
    while (b->cnt < n) {
        if (b->pos >= b->len) {
            b->error = 1;
            return 0;
        }
        b->acc = (b->acc << 8) | b->src[b->pos++];
        b->cnt += 8;
    }
    b->cnt -= n;
    return (uint32_t)((b->acc >> b->cnt) & ((1ull << n) - 1u));
}

/* ------------------------------------------------------------------ aPLib (FSG, MEW) */

/* The next tag bit (8 per tag byte, most significant first, a sentinel bit marking the
 * end of the byte), or -1: a new tag byte is never taken from the last input byte. */
static inline int vg_tag_bit(const uint8_t *src, size_t len, size_t *pos, uint8_t *tag)
{
    uint8_t old = *tag;
    *tag = (uint8_t)(old << 1);
    if (!(old & 0x7f)) {
        if (len == 0 || *pos >= len - 1)
            return -1;
        old = src[(*pos)++];
        *tag = (uint8_t)(old * 2 + 1);
    }
    return (old >> 7) & 1;
}

typedef struct {
    const uint8_t *src;
    size_t slen;
    size_t spos;
    uint8_t tag;
} vg_aplib_bits;

static inline int vg_aplib_bit(vg_aplib_bits *b)
{
    return vg_tag_bit(b->src, b->slen, &b->spos, &b->tag);
}

/* 1, then value = value * 2 + bit while the following bit is 1 (32-bit wrap). */
static inline int vg_aplib_gamma(vg_aplib_bits *b, uint32_t *out)
{
    uint32_t v = 1;
    int x, more;
    do {
        if ((x = vg_aplib_bit(b)) < 0)
            return -1;
        v = v * 2 + (uint32_t)x;
        if ((more = vg_aplib_bit(b)) < 0)
            return -1;
    } while (more);
    *out = v;
    return 0;
}

/*
 * The aPLib-style LZ stream as libclamav's cli_unfsg/unmew read it, quirks included (the
 * tag byte reader never reads the last byte of the input, a reused offset may be 0,
 * lengths wrap at 32 bits): src[0:slen] decoded into dst[0:dsize], matches counted inside
 * that window only. 0 at the end marker with the bytes of src consumed and of dst
 * written, -1 on damage. src and dst may lie in one buffer and overlap (MEW decodes in
 * place): every byte is read when it is needed, in the stream's order.
 */
static inline int vg_aplib_decode(const uint8_t *src, size_t slen, uint8_t *dst, size_t dsize,
                                  size_t *consumed, size_t *written)
{
    vg_aplib_bits b = {src, slen, 0, 0x80};
    size_t at = 0;
    uint32_t back = 0, len, oldback = 0, v;
    int x, lostbit = 1;

    if (slen == 0 || dsize == 0)
        return -1;
    dst[at++] = src[b.spos++];

    for (;;) {
        if ((x = vg_aplib_bit(&b)) < 0)
            return -1;
        if (!x) { /* literal */
            if (at >= dsize || b.spos >= slen)
                return -1;
            dst[at++] = src[b.spos++];
            lostbit = 1;
            continue;
        }
        if ((x = vg_aplib_bit(&b)) < 0)
            return -1;
        if (x) {
            if ((x = vg_aplib_bit(&b)) < 0)
                return -1;
            if (x) { /* short: 4-bit offset, one byte (offset 0: a zero byte) */
                lostbit = 1;
                len = 1;
                back = 0x10;
                while (back < 0x100) {
                    if ((x = vg_aplib_bit(&b)) < 0)
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
            if (vg_aplib_gamma(&b, &len) < 0)
                return -1;
            len = len - 1 - (uint32_t)lostbit;
            if (!len) {
                if (vg_aplib_gamma(&b, &len) < 0)
                    return -1;
                back = oldback;
            } else {
                if (b.spos >= slen)
                    return -1;
                back = (uint32_t)src[b.spos] + ((len - 1) << 8);
                b.spos++;
                if (vg_aplib_gamma(&b, &len) < 0)
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

/* ------------------------------------------------------------------ output buffer */

typedef struct {
    uint8_t *buf;
    size_t len;  /* bytes written */
    size_t size; /* bytes allocated */
    size_t cap;  /* bytes allowed */
    int failed;  /* allocation failure */
} vg_out;

/* Room for ``want`` more bytes: how many (fewer at the cap; 0 when memory runs out). */
static inline size_t vg_out_reserve(vg_out *o, size_t want)
{
    size_t need, grow;
    uint8_t *p;
    if (want > o->cap - o->len)
        want = o->cap - o->len;
    need = o->len + want;
    if (need <= o->size)
        return want;
    grow = o->size ? o->size : 65536u;
    while (grow < need)
        grow = grow > o->cap / 2 ? o->cap : grow * 2;
    if (grow > o->cap)
        grow = o->cap;
    p = realloc(o->buf, grow);
    if (!p) {
        o->failed = 1;
        return 0;
    }
    o->buf = p;
    o->size = grow;
    return want;
}

/* One byte; -1 at the cap or when memory runs out. */
static inline int vg_out_put(vg_out *o, uint8_t byte)
{
    if (vg_out_reserve(o, 1) != 1)
        return -1;
    o->buf[o->len++] = byte;
    return 0;
}

/* Appends (up to the cap) a copy of ``length`` bytes from ``dist`` back, zeros before the
 * start of the output; -1 when memory runs out. */
static inline int vg_out_copy(vg_out *o, size_t dist, size_t length)
{
    size_t i, n = o->len;
    length = vg_out_reserve(o, length);
    if (o->failed)
        return -1;
    for (i = 0; i < length; i++, n++)
        o->buf[n] = n >= dist ? o->buf[n - dist] : 0;
    o->len = n;
    return 0;
}

/* Appends ``n`` bytes of ``src`` (or ``n`` times ``fill`` when src is NULL), as many as
 * fit under the cap; 0 once the cap is reached or memory runs out, else 1. */
static inline int vg_out_write(vg_out *o, const uint8_t *src, uint8_t fill, size_t n)
{
    n = vg_out_reserve(o, n);
    if (o->failed)
        return 0;
    if (n) {
        if (src)
            memcpy(o->buf + o->len, src, n);
        else
            memset(o->buf + o->len, fill, n);
    }
    o->len += n;
    return o->len < o->cap;
}

/* The output as bytes (MemoryError after an allocation failure); frees the buffer. */
static inline PyObject *vg_out_finish(vg_out *o)
{
    PyObject *res;
    if (o->failed) {
        free(o->buf);
        o->buf = NULL;
        return PyErr_NoMemory();
    }
    res = PyBytes_FromStringAndSize(o->len ? (const char *)o->buf : "", (Py_ssize_t)o->len);
    free(o->buf);
    o->buf = NULL;
    return res;
}

/* ------------------------------------------------------------------ module boilerplate */

/* The module definition and init function of a module made of plain functions. */
#define VG_MODULE(NAME, DOC, METHODS)                                                  \
    static struct PyModuleDef vg_module_def = {                                        \
        PyModuleDef_HEAD_INIT, #NAME, DOC, -1, METHODS, NULL, NULL, NULL, NULL,        \
    };                                                                                 \
    PyMODINIT_FUNC PyInit_##NAME(void)                                                 \
    {                                                                                  \
        return PyModule_Create(&vg_module_def);                                        \
    }

#endif /* VIGIL_NATIVE_COMMON_H */
