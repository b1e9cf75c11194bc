/*
 * MEW 11 SE unpacking, in place over one buffer: the zeroed destination area (the empty
 * first section, dsize bytes) followed by the MEW section's data (ssize bytes), as
 * libclamav's unmew11 lays them out. Two methods:
 *
 *  - "MEW 5": a chain of aPLib-style streams, each written at the address the previous
 *    one's trailer names; the sections of the rebuilt image are cut at each stream's end
 *    (rounded up to 0x1000).
 *  - LZMA: after the aPLib-compressed loader, one or more LZMA (lc=4, lp=0, pb=2) blocks
 *    whose probability table lives in the image itself (so its final state is part of the
 *    rebuilt image); the "special" variant has one block and then turns the big-endian
 *    absolute E8/E9 call targets back into relative ones.
 *
 * Source and destination share the buffer and may overlap, exactly as in libclamav, so
 * every read and write goes through the same bounds checks libclamav makes (plus the ones
 * it leaves to luck). Work is bounded: every step consumes input or output inside the
 * buffer, and the number of LZMA blocks and of streams, and the total output, are capped
 * (a real MEW file has a handful of each).
 *
 * unpack(buf, off, ssize, dsize, base, vadd, uselzma)
 *     -> (entry_rva, [(raw, rva, rsz, vsz), ...]) | None
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_common.h"

#define MAX_SECTIONS 97  /* one more than a rebuilt PE may have: that many fails anyway */
#define MAX_STREAMS 4096
#define MAX_BLOCKS 4096
#define PROBS_BYTES 0x6E6Cu

typedef struct {
    uint8_t *b;
    uint64_t size;
    uint64_t budget; /* output bytes left for the whole unpacking */
} buffer;

static uint32_t rd32(const buffer *m, uint64_t at)
{
    return vg_rd32(m->b + at);
}

static void wr32(buffer *m, uint64_t at, uint32_t v)
{
    vg_wr32(m->b + at, v);
}

/* [at, at+len) non-empty and inside the buffer (libclamav's CLI_ISCONTAINED) */
static int inside(const buffer *m, uint64_t at, uint64_t len)
{
    return vg_inside(m->size, at, len);
}

static int spend(buffer *m, uint64_t n)
{
    if (n > m->budget)
        return -1;
    m->budget -= n;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The aPLib-style stream (libclamav's unmew): source window [s0, s0+slen), destination
 * window [d0, d0+dlen), both already checked to lie inside the buffer (they may overlap:
 * the shared decoder reads each byte when it needs it, as libclamav does). */

static int mew_stream(buffer *m, uint64_t s0, uint64_t slen, uint64_t d0, uint64_t dlen,
                      uint64_t *send, uint64_t *dend)
{
    /* the window, or less when the output budget is nearly spent (hostile input only) */
    size_t consumed, written, dsize = (size_t)(dlen < m->budget ? dlen : m->budget);
    if (vg_aplib_decode(m->b + s0, (size_t)slen, m->b + d0, dsize, &consumed, &written) < 0)
        return -1;
    *send = s0 + consumed;
    *dend = d0 + written;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * LZMA with the probabilities in the buffer (16-bit values, each read as a 32-bit word). */

typedef struct {
    buffer *m;
    uint64_t in;
    uint32_t range, code;
} rcoder;

static int rc_bit(rcoder *rc, uint64_t prob)
{
    buffer *m = rc->m;
    uint32_t p, bound;
    int bit;
    if (!inside(m, prob, 4) || !inside(m, rc->in, 1))
        return -1;
    p = (uint32_t)m->b[prob] | (uint32_t)m->b[prob + 1] << 8;
    bound = (rc->range >> 11) * p;
    if (rc->code < bound) {
        rc->range = bound;
        p = (p + (uint32_t)((int32_t)(0x800 - p) >> 5)) & 0xffff;
        bit = 0;
    } else {
        rc->range -= bound;
        rc->code -= bound;
        p = (p - (p >> 5)) & 0xffff;
        bit = 1;
    }
    m->b[prob] = (uint8_t)p;
    m->b[prob + 1] = (uint8_t)(p >> 8);
    if (rc->range < 0x1000000) {
        rc->code = (rc->code << 8) | m->b[rc->in++];
        rc->range <<= 8;
    }
    return bit;
}

/* n-bit tree, most significant bit first; the value without its leading 1 */
static int rc_tree(rcoder *rc, uint64_t probs, unsigned n, uint32_t *out)
{
    uint32_t v = 1;
    int bit;
    unsigned i;
    for (i = 0; i < n; i++) {
        if ((bit = rc_bit(rc, probs + 2 * (uint64_t)v)) < 0)
            return -1;
        v = 2 * v + (uint32_t)bit;
    }
    *out = v - (1u << n);
    return 0;
}

/* n-bit tree, least significant bit first */
static int rc_reverse(rcoder *rc, uint64_t probs, unsigned n, uint32_t *out)
{
    uint32_t v = 1, r = 0;
    int bit;
    unsigned i;
    for (i = 0; i < n; i++) {
        if ((bit = rc_bit(rc, probs + 2 * (uint64_t)v)) < 0)
            return -1;
        v = 2 * v + (uint32_t)bit;
        r |= (uint32_t)bit << i;
    }
    *out = r;
    return 0;
}

static int rc_direct(rcoder *rc, unsigned n, uint32_t *out)
{
    uint32_t r = 0;
    while (n--) {
        rc->range >>= 1;
        r <<= 1;
        if (rc->code >= rc->range) {
            rc->code -= rc->range;
            r |= 1;
        }
        if (rc->range < 0x1000000) {
            if (!inside(rc->m, rc->in, 1))
                return -1;
            rc->code = (rc->code << 8) | rc->m->b[rc->in++];
            rc->range <<= 8;
        }
    }
    *out = r;
    return 0;
}

static int rc_length(rcoder *rc, uint64_t probs, uint32_t posstate, uint32_t *out)
{
    int bit;
    if ((bit = rc_bit(rc, probs)) < 0)
        return -1;
    if (!bit)
        return rc_tree(rc, probs + 4 + ((uint64_t)posstate << 4), 3, out);
    if ((bit = rc_bit(rc, probs + 2)) < 0)
        return -1;
    if (!bit) {
        if (rc_tree(rc, probs + 0x104 + ((uint64_t)posstate << 4), 3, out) < 0)
            return -1;
        *out += 8;
        return 0;
    }
    if (rc_tree(rc, probs + 0x204, 8, out) < 0)
        return -1;
    *out += 0x10;
    return 0;
}

/* One block: out_size bytes to dest (an image offset). 0, or -1 on damage. */
static int lzma_block(buffer *m, uint64_t probs, uint64_t dest, uint32_t out_size, rcoder *rc)
{
    uint32_t state = 0, pos = 0, rep0 = 1, rep1 = 1, rep2 = 1, rep3 = 1, len = 0, sym, v;
    uint8_t prev = 0;
    int after_match = 0, bit;

    do {
        uint32_t posstate = pos & 3;
        if ((bit = rc_bit(rc, probs + 2 * (uint64_t)((state << 4) + posstate))) < 0)
            return -1;
        if (!bit) { /* literal */
            uint64_t lit = probs + 0xe6c + (((uint64_t)(prev >> 4) * 3) << 9);
            state = state < 4 ? 0 : state < 10 ? state - 3 : state - 6;
            if (!after_match) {
                if (rc_tree(rc, lit, 8, &sym) < 0)
                    return -1;
            } else {
                uint64_t at = dest + (uint32_t)(pos - rep0);
                uint32_t match, mbit;
                if (!inside(m, at, 1))
                    return -1;
                match = m->b[at];
                sym = 1;
                for (;;) {
                    mbit = (match >> 7) & 1;
                    match <<= 1;
                    if ((bit = rc_bit(rc, lit + 2 * (uint64_t)(0x100 + (mbit << 8) + sym))) < 0)
                        return -1;
                    sym = 2 * sym + (uint32_t)bit;
                    if ((uint32_t)bit != mbit || sym >= 0x100)
                        break;
                }
                while (sym < 0x100) {
                    if ((bit = rc_bit(rc, lit + 2 * (uint64_t)sym)) < 0)
                        return -1;
                    sym = 2 * sym + (uint32_t)bit;
                }
                sym &= 0xff;
                after_match = 0;
            }
            if (!inside(m, dest + pos, 1) || spend(m, 1) < 0)
                return -1;
            prev = (uint8_t)sym;
            m->b[dest + pos++] = prev;
            continue;
        }
        after_match = 1;
        if ((bit = rc_bit(rc, probs + 0x180 + 2 * (uint64_t)state)) < 0)
            return -1;
        if (!bit) { /* a new match */
            uint32_t slot;
            rep3 = rep2;
            rep2 = rep1;
            rep1 = rep0;
            state = state < 7 ? 7 : 10;
            if (rc_length(rc, probs + 0x664, posstate, &len) < 0)
                return -1;
            if (rc_tree(rc, probs + 0x360 + ((uint64_t)(len < 4 ? len : 3) << 7), 6, &slot) < 0)
                return -1;
            if (slot < 4) {
                rep0 = slot;
            } else {
                unsigned bits = (slot >> 1) - 1;
                rep0 = ((slot & 1) | 2) << bits;
                if (slot >= 14) {
                    if (rc_direct(rc, bits - 4, &v) < 0)
                        return -1;
                    rep0 += v << 4;
                    if (rc_reverse(rc, probs + 0x644, 4, &v) < 0)
                        return -1;
                } else if (rc_reverse(rc, probs + 2 * (uint64_t)(uint32_t)(rep0 - slot) + 0x55e,
                                      bits, &v) < 0) {
                    return -1;
                }
                rep0 += v;
            }
            rep0++;
        } else {
            if ((bit = rc_bit(rc, probs + 0x198 + 2 * (uint64_t)state)) < 0)
                return -1;
            if (!bit) {
                if ((bit = rc_bit(rc, probs + 2 * (uint64_t)(((state + 0xf) << 4) + posstate))) < 0)
                    return -1;
                if (!bit) { /* one byte from rep0 */
                    uint64_t from = dest + (uint32_t)(pos - rep0);
                    state = state < 7 ? 9 : 11;
                    if (!inside(m, from, 1) || !inside(m, dest + pos, 1) || spend(m, 1) < 0)
                        return -1;
                    prev = m->b[from];
                    m->b[dest + pos++] = prev;
                    continue;
                }
            } else {
                uint32_t dist;
                if ((bit = rc_bit(rc, probs + 0x1b0 + 2 * (uint64_t)state)) < 0)
                    return -1;
                if (!bit) {
                    dist = rep1;
                } else {
                    if ((bit = rc_bit(rc, probs + 0x1c8 + 2 * (uint64_t)state)) < 0)
                        return -1;
                    if (bit) {
                        dist = rep3;
                        rep3 = rep2;
                    } else {
                        dist = rep2;
                    }
                    rep2 = rep1;
                }
                rep1 = rep0;
                rep0 = dist;
            }
            if (rc_length(rc, probs + 0xa68, posstate, &len) < 0)
                return -1;
            state = state < 7 ? 8 : 11;
        }
        if (!rep0)
            break; /* the end marker */
        {
            uint32_t count = len + 2, left = out_size - pos;
            uint64_t from = dest + (uint32_t)(pos - rep0), to = dest + pos;
            if ((count < left && (!inside(m, from, count) || !inside(m, to, count))) ||
                !inside(m, from, left) || !inside(m, to, left))
                return -1;
            if (count > left)
                count = left;
            if (spend(m, count) < 0)
                return -1;
            while (count--) {
                prev = m->b[from++];
                m->b[to++] = prev;
                pos++;
            }
        }
    } while (pos < out_size);
    return 0;
}

/* libclamav's mew_lzma: 0, or -1. */
static int mew_lzma(buffer *m, uint64_t at, uint32_t vma, int special)
{
    uint64_t probs, next, fixups = 0;
    uint32_t fixlen = 0, blocks = 0;
    int fresh = 0;

    if (special) {
        fixlen = rd32(m, at);
        at += 4;
    }
    probs = (uint32_t)(rd32(m, at) - vma);
    next = at + 4;
    for (;;) {
        uint32_t out_size = 0;
        uint64_t dest = 0, rc_at;
        rcoder rc;
        do { /* blocks of size 0 are skipped */
            uint32_t packed;
            if (!inside(m, next, special ? 12 : 16))
                return -1;
            if (!special && !rd32(m, next))
                return 0;
            if (++blocks > MAX_BLOCKS)
                return -1;
            out_size = rd32(m, next);
            dest = (uint32_t)(rd32(m, next + 4) - vma);
            packed = rd32(m, next + 8);
            rc_at = next + 13;
            next = rc_at + packed;
            if (!inside(m, probs, PROBS_BYTES))
                return -1;
            if (!fresh) {
                uint64_t i;
                for (i = 0; i < PROBS_BYTES; i += 4)
                    wr32(m, probs + i, 0x4000400);
                fresh = 1; /* refilling before anything is decoded changes nothing */
            }
            if (!inside(m, rc_at, 5))
                return -1;
        } while (!out_size);
        fresh = 0;
        if (special)
            fixups = dest;
        rc.m = m;
        rc.in = rc_at + 5;
        rc.range = 0xffffffff;
        rc.code = vg_bswap32(rd32(m, rc_at + 1));
        if (lzma_block(m, probs, dest, out_size, &rc) < 0)
            return -1;
        if (special) {
            uint32_t i;
            if (fixlen < 5 || !inside(m, fixups, fixlen))
                return 0; /* the calls are left as they are */
            for (i = 0; i < fixlen - 5; i++) {
                uint8_t op = m->b[fixups + i];
                if (op == 0xe8 || op == 0xe9) {
                    uint64_t a = fixups + i + 1;
                    wr32(m, a, vg_bswap32(rd32(m, a)) - i - 1);
                    i += 4;
                }
            }
            return 0;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * libclamav's unmew11 */

typedef struct {
    uint32_t raw, rva, rsz, vsz;
} section;

static int unmew11(buffer *m, uint32_t off, uint32_t ssize, uint32_t dsize, uint32_t base,
                   uint32_t vadd, int32_t uselzma, uint32_t *entry, section *out, int *count)
{
    uint32_t vma = base + vadd, size_sum = ssize + dsize, loc_ss, loc_ds, newedi, f1v;
    uint64_t source, lesi, ledi, f1 = 0, f2 = 0;
    int i = 0, streams = 0;

    if (vma < base || size_sum < ssize || (uint64_t)size_sum != m->size)
        return -1;
    if (!inside(m, off, 12) || !inside(m, (uint64_t)dsize + off, 12))
        return -1;
    source = (uint64_t)dsize + off;
    lesi = source + 12;
    *entry = rd32(m, source + 4);
    newedi = rd32(m, source + 8);
    ledi = (uint32_t)(newedi - vma);
    loc_ds = size_sum - (newedi - vma);
    loc_ss = ssize - 12 - off;
    for (;;) {
        if (!inside(m, lesi, loc_ss) || !inside(m, ledi, loc_ds) || ++streams > MAX_STREAMS)
            return -1;
        if (mew_stream(m, lesi, loc_ss, ledi, loc_ds, &f1, &f2) < 0)
            return -1;
        if (spend(m, f2 - ledi) < 0 || !inside(m, f1, 4))
            return -1;
        loc_ss -= (uint32_t)(f1 + 4 - lesi);
        lesi = f1 + 4;
        f1v = rd32(m, f1);
        ledi = (uint32_t)(f1v - vma);
        loc_ds = size_sum - (f1v - vma);
        if (!uselzma) {
            uint32_t val = (uint32_t)(((f2 + 0xfff) / 0x1000) * 0x1000);
            if (i + 1 >= MAX_SECTIONS)
                return -1; /* more sections than a rebuilt PE may have */
            if (i && val < out[i].raw)
                return -1;
            out[0].raw = 0;
            out[0].rva = vadd;
            out[i + 1].raw = val;
            out[i + 1].rva = val + vadd;
            out[i].rsz = out[i].vsz = i ? val - out[i].raw : val;
            if ((uint32_t)(out[i].raw + out[i].rsz) > dsize)
                return -1;
        }
        i++;
        if (!f1v)
            break;
    }
    if (uselzma) {
        int64_t tag = (int64_t)uselzma + 8;
        if (tag < 0 || !inside(m, (uint64_t)tag, 1) || !inside(m, f1 + 4, 29))
            return -1;
        if (mew_lzma(m, f1 + 4, vma, m->b[tag] == 0x50) < 0)
            return -1;
        out[0].raw = 0;
        out[0].rva = vadd;
        out[0].rsz = out[0].vsz = dsize;
        i = 1;
    }
    *count = i;
    return 0;
}

static PyObject *py_unpack(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    unsigned long off, ssize, dsize, base, vadd, uselzma;
    section out[MAX_SECTIONS + 1];
    uint32_t entry = 0;
    int count = 0, rc = -1, i;
    PyObject *result = NULL, *items;
    (void)self;

    if (!PyArg_ParseTuple(args, "w*kkkkkk", &buf, &off, &ssize, &dsize, &base, &vadd, &uselzma))
        return NULL;
    if (off <= 0xffffffffUL && ssize <= 0xffffffffUL && dsize <= 0xffffffffUL &&
        base <= 0xffffffffUL && vadd <= 0xffffffffUL && uselzma <= 0xffffffffUL && buf.len > 0) {
        buffer m = {(uint8_t *)buf.buf, (uint64_t)buf.len, 2 * (uint64_t)buf.len + 0x10000};
        memset(out, 0, sizeof(out));
        Py_BEGIN_ALLOW_THREADS
        rc = unmew11(&m, (uint32_t)off, (uint32_t)ssize, (uint32_t)dsize, (uint32_t)base,
                     (uint32_t)vadd, (int32_t)(uint32_t)uselzma, &entry, out, &count);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    if (rc < 0)
        Py_RETURN_NONE;
    items = PyList_New(count);
    if (!items)
        return NULL;
    for (i = 0; i < count; i++) {
        PyObject *item = Py_BuildValue("(kkkk)", (unsigned long)out[i].raw,
                                       (unsigned long)out[i].rva, (unsigned long)out[i].rsz,
                                       (unsigned long)out[i].vsz);
        if (!item) {
            Py_DECREF(items);
            return NULL;
        }
        PyList_SET_ITEM(items, i, item);
    }
    result = Py_BuildValue("(kN)", (unsigned long)entry, items);
    return result;
}

static PyMethodDef methods[] = {
    {"unpack", py_unpack, METH_VARARGS,
     "unpack(buf, off, ssize, dsize, base, vadd, uselzma) -> (entry, sections) | None: "
     "MEW 11 unpacking in place."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_mew, "MEW 11 SE unpacking (aPLib-style and LZMA).", methods)
