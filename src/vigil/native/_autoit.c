/*
 * AutoIt v3 compiled-script helpers: the two keystreams that hide the embedded files
 * (EA05: a Mersenne-Twister MT19937 byte stream; EA06: a lagged additive generator of 17
 * rotating words) and the LZSS variant that packs them.
 *
 * Every routine is a byte- or bit-level loop that Python cannot vectorise, so they live
 * here. Each one bounds every read by the input length and every write by the output
 * length the caller allows, releases the GIL while it works, and returns the decodable
 * prefix of damaged input instead of failing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

/* ---- EA05 keystream: MT19937, output byte = (tempered word >> 1) & 0xff ---- */

#define MT_N 624
#define MT_M 397

typedef struct {
    uint32_t state[MT_N];
    unsigned int index;
} mt_t;

static void mt_seed(mt_t *mt, uint32_t seed)
{
    unsigned int i;
    mt->state[0] = seed;
    for (i = 1; i < MT_N; i++) {
        uint32_t prev = mt->state[i - 1];
        mt->state[i] = 0x6c078965u * (prev ^ (prev >> 30)) + i;
    }
    mt->index = MT_N;
}

static void mt_refill(mt_t *mt)
{
    unsigned int i;
    for (i = 0; i < MT_N; i++) {
        uint32_t y = (mt->state[i] & 0x80000000u) | (mt->state[(i + 1) % MT_N] & 0x7fffffffu);
        uint32_t v = mt->state[(i + MT_M) % MT_N] ^ (y >> 1);
        if (y & 1u)
            v ^= 0x9908b0dfu;
        mt->state[i] = v;
    }
    mt->index = 0;
}

static uint8_t mt_byte(mt_t *mt)
{
    uint32_t y;
    if (mt->index >= MT_N)
        mt_refill(mt);
    y = mt->state[mt->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return (uint8_t)(y >> 1);
}

static void xor_mt(uint8_t *buf, Py_ssize_t len, uint32_t seed)
{
    mt_t mt;
    Py_ssize_t i;
    mt_seed(&mt, seed);
    for (i = 0; i < len; i++)
        buf[i] ^= mt_byte(&mt);
}

/* ---- EA06 keystream: 17 words, two taps (rotations by 9 and 13), top byte of every
 * second word. The reference implementation goes through an IEEE double built from the
 * word; (word / 2^32) * 256 truncated is exactly word >> 24, so no floating point. ---- */

typedef struct {
    uint32_t words[17];
    unsigned int a;
    unsigned int b;
} lag_t;

static uint32_t rotl32(uint32_t v, unsigned int n)
{
    return (v << n) | (v >> (32u - n));
}

static uint32_t lag_step(lag_t *g)
{
    uint32_t v = rotl32(g->words[g->a], 9) + rotl32(g->words[g->b], 13);
    g->words[g->a] = v;
    g->a = g->a ? g->a - 1 : 16;
    g->b = g->b ? g->b - 1 : 16;
    return v;
}

static void lag_seed(lag_t *g, uint32_t seed)
{
    unsigned int i;
    for (i = 0; i < 17; i++) {
        seed = 1u - seed * 0x53a9b4fbu;
        g->words[i] = seed;
    }
    g->a = 0;
    g->b = 10;
    for (i = 0; i < 9; i++)
        (void)lag_step(g);
}

static void xor_lag(uint8_t *buf, Py_ssize_t len, uint32_t seed)
{
    lag_t g;
    Py_ssize_t i;
    lag_seed(&g, seed);
    for (i = 0; i < len; i++) {
        (void)lag_step(&g);
        buf[i] ^= (uint8_t)(lag_step(&g) >> 24);
    }
}

static PyObject *keystream_xor(PyObject *args, int kind)
{
    Py_buffer in;
    unsigned long seed;
    PyObject *out;
    if (!PyArg_ParseTuple(args, "y*k", &in, &seed))
        return NULL;
    /* a fresh object: given the data, CPython would hand back its shared 1-byte bytes */
    out = PyBytes_FromStringAndSize(NULL, in.len);
    if (out != NULL && in.len > 0) {
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        Py_ssize_t len = in.len;
        memcpy(dst, in.buf, (size_t)len);
        Py_BEGIN_ALLOW_THREADS
        if (kind == 5)
            xor_mt(dst, len, (uint32_t)seed);
        else
            xor_lag(dst, len, (uint32_t)seed);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&in);
    return out;
}

static PyObject *py_decrypt_ea05(PyObject *self, PyObject *args)
{
    (void)self;
    return keystream_xor(args, 5);
}

static PyObject *py_decrypt_ea06(PyObject *self, PyObject *args)
{
    (void)self;
    return keystream_xor(args, 6);
}

/* ---- LZSS: 16-bit big-endian words feed a bit reader; a flag bit selects a literal
 * (8 bits) or a match (15-bit distance, then a length in escalating 2/3/5/8-bit
 * fields, plus 3). EA05 marks matches with 1, EA06 with 0. ---- */

typedef struct {
    const uint8_t *in;
    size_t len;
    size_t pos;
    uint32_t acc;   /* bits waiting, most significant first */
    unsigned int avail;
    int error;
} bits_t;

static uint32_t take(bits_t *r, unsigned int n)
{
    uint32_t v = 0;
    if (n > r->avail) {
        size_t words = (n - r->avail - 1) / 16 + 1;
        if (r->pos > r->len || words * 2 > r->len - r->pos) {
            r->error = 1;
            return 0;
        }
    }
    while (n--) {
        if (!r->avail) {
            r->acc = ((uint32_t)r->in[r->pos] << 8) | r->in[r->pos + 1];
            r->pos += 2;
            r->avail = 16;
        }
        r->avail--;
        v = (v << 1) | ((r->acc >> r->avail) & 1u);
    }
    return v;
}

/* Decode into out[0..cap); usize is the size the stream declares (bounds for matches).
 * Returns the number of bytes produced. */
static size_t lzss(const uint8_t *in, size_t len, int version, size_t usize, uint8_t *out,
                   size_t cap)
{
    bits_t r = {in, len, 8, 0, 0, 0};
    size_t cur = 0;
    uint32_t match_flag = version == 5 ? 1u : 0u;
    size_t stop = cap < usize ? cap : usize;

    while (!r.error && cur < stop) {
        if (take(&r, 1) == match_flag) {
            size_t dist, count, extra = 0, i;
            uint32_t v;
            dist = take(&r, 15);
            v = take(&r, 2);
            if (v == 3) {
                extra = 3;
                v = take(&r, 3);
                if (v == 7) {
                    extra = 10;
                    v = take(&r, 5);
                    if (v == 31) {
                        extra = 41;
                        v = take(&r, 8);
                        if (v == 255) {
                            extra = 296;
                            while (!r.error && (v = take(&r, 8)) == 255)
                                extra += 255;
                        }
                    }
                }
            }
            if (r.error)
                break;
            count = (size_t)v + 3 + extra;
            /* the copy must fit in the declared size and start inside the output */
            if (count > usize - cur || dist > cur) {
                r.error = 1;
                break;
            }
            for (i = 0; i < count && cur < stop; i++, cur++)
                out[cur] = dist ? out[cur - dist] : 0;
        } else {
            /* a literal; a failed read still stores the 0 the reader returned */
            out[cur++] = (uint8_t)take(&r, 8);
        }
    }
    return cur;
}

static PyObject *py_decompress(PyObject *self, PyObject *args)
{
    Py_buffer in;
    int version;
    Py_ssize_t usize, cap;
    PyObject *out;
    size_t got;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*inn", &in, &version, &usize, &cap))
        return NULL;
    if ((version != 5 && version != 6) || usize < 0 || cap < 0) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "bad version or size");
        return NULL;
    }
    if (cap > usize)
        cap = usize;
    out = PyBytes_FromStringAndSize(NULL, cap);
    if (out == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    memset(PyBytes_AS_STRING(out), 0, (size_t)cap);
    {
        const uint8_t *src = (const uint8_t *)in.buf;
        size_t len = (size_t)in.len;
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        got = lzss(src, len, version, (size_t)usize, dst, (size_t)cap);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&in);
    if ((Py_ssize_t)got != cap && _PyBytes_Resize(&out, (Py_ssize_t)got) < 0)
        return NULL;
    return out;
}

/* ---- EA06 script: the tokenised form back to text, as libclamav writes it ---- */

typedef struct {
    uint8_t *buf;
    size_t len;
    size_t cap;   /* the caller's output limit */
    int full;
} sink_t;

static void emit(sink_t *o, const void *src, size_t n)
{
    size_t room = o->cap - o->len;
    if (n > room) {
        n = room;
        o->full = 1;
    }
    memcpy(o->buf + o->len, src, n);
    o->len += n;
}

/* libclamav's "UTF-16 to ASCII" squeeze, in place: drops a BOM, or keeps every second
 * byte when at least a quarter of the first ten units look like ASCII; else nothing. */
static void squeeze(uint8_t *p, size_t len)
{
    const uint8_t *src = p;
    size_t i, j;
    if (len < 2)
        return;
    if (len > 4 && src[0] == 0xff && src[1] == 0xfe && src[2]) {
        len -= 2;
        src += 2;
    } else {
        size_t cnt = 0;
        j = len > 20 ? 20 : (len & ~(size_t)1);
        for (i = 0; i < j; i += 2)
            cnt += (src[i] != 0 && src[i + 1] == 0);
        if (cnt * 4 < j)
            return;
    }
    j = len;
    for (i = 0; i + 1 < j; i += 2)
        *p++ = src[i];
}

typedef struct {
    const char **names;
    size_t count;
} table_t;

/* 1: stop (damaged input or output full), 0: go on */
static int detok_string(const uint8_t *in, size_t usize, size_t *pos, uint8_t op, sink_t *o)
{
    static const char prefixes[8] = {0, 0, '@', '$', 0, '.', '"', 0};
    uint32_t chars;
    size_t dchars, i;
    uint8_t *tmp;
    if (usize < 4 || *pos >= usize - 4)
        return 1;
    chars = vg_rd32(in + *pos);
    *pos += 4;
    dchars = (size_t)chars * 2;
    if (dchars > 0xffffffffu || usize < dchars || *pos >= usize - dchars)
        return 1;
    if (prefixes[op - 0x30])
        emit(o, &prefixes[op - 0x30], 1);
    if (chars) {
        tmp = (uint8_t *)malloc(dchars);
        if (tmp == NULL)
            return 1;
        for (i = 0; i < dchars; i += 2) {
            tmp[i] = in[*pos + i] ^ (uint8_t)chars;
            tmp[i + 1] = in[*pos + i + 1] ^ (uint8_t)(chars >> 8);
        }
        squeeze(tmp, dchars);
        emit(o, tmp, chars);
        free(tmp);
        *pos += dchars;
    }
    if (op == 0x36)
        emit(o, "\"", 1);
    if (op != 0x34)
        emit(o, " ", 1);
    return 0;
}

static size_t detokenise(const uint8_t *in, size_t usize, uint8_t *out, size_t cap,
                         const table_t *keywords, const table_t *functions)
{
    static const char *opers[] = {",", "=", ">", "<", "<>", ">=", "<=", "(", ")",
                                  "+", "-", "/", "*", "&", "[", "]", "==", "^",
                                  "+=", "-=", "/=", "*=", "&=", "?", ":"};
    sink_t o = {out, 0, cap, 0};
    size_t pos = 4;
    uint32_t lines;
    char text[64];
    if (usize < 4)
        return 0;
    lines = vg_rd32(in);
    while (lines && pos < usize && !o.full) {
        uint8_t op = in[pos++];
        if (op == 0 || op == 1) {
            const table_t *t = op == 0 ? keywords : functions;
            uint32_t id;
            if (usize < 4 || pos >= usize - 4)
                break;
            id = vg_rd32(in + pos);
            if (id >= t->count)
                break;
            pos += 4;
            emit(&o, t->names[id], strlen(t->names[id]));
            emit(&o, " ", 1);
        } else if (op == 5) {
            int n;
            if (pos >= usize - 4)
                break;
            n = snprintf(text, sizeof(text), "0x%08x ", (unsigned int)vg_rd32(in + pos));
            emit(&o, text, (size_t)n);
            pos += 4;
        } else if (op == 0x10 || op == 0x20) {
            uint64_t v;
            int n;
            if (usize < 8 || pos >= usize - 8)
                break;
            v = ((uint64_t)vg_rd32(in + pos + 4) << 32) | vg_rd32(in + pos);
            if (op == 0x10) {
                n = snprintf(text, sizeof(text), "0x%016llx ", (unsigned long long)v);
            } else {
                double d;
                memcpy(&d, &v, sizeof(d));
                n = snprintf(text, 39, "%g ", d);
                if (n > 38)
                    n = 38;
            }
            emit(&o, text, (size_t)n);
            pos += 8;
        } else if (op >= 0x30 && op <= 0x37) {
            if (detok_string(in, usize, &pos, op, &o))
                break;
        } else if (op >= 0x40 && op <= 0x58) {
            const char *s = opers[op - 0x40];
            emit(&o, s, strlen(s));
            emit(&o, " ", 1);
        } else if (op == 0x7f) {
            lines--;
            emit(&o, "\n", 1);
        } else {
            break;
        }
    }
    return o.len;
}

static int load_table(PyObject *seq, table_t *t)
{
    Py_ssize_t i, n;
    if (!PyTuple_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "tables must be tuples of bytes");
        return -1;
    }
    n = PyTuple_GET_SIZE(seq);
    t->names = (const char **)PyMem_Malloc(sizeof(char *) * (size_t)(n ? n : 1));
    if (t->names == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, i);
        if (!PyBytes_Check(item)) {
            PyMem_Free(t->names);
            t->names = NULL;
            PyErr_SetString(PyExc_TypeError, "tables must be tuples of bytes");
            return -1;
        }
        t->names[i] = PyBytes_AS_STRING(item);
    }
    t->count = (size_t)n;
    return 0;
}

static PyObject *py_detokenise(PyObject *self, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t cap;
    PyObject *kw_seq, *fn_seq, *out = NULL;
    table_t kw = {NULL, 0}, fn = {NULL, 0};
    size_t got;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nO!O!", &in, &cap, &PyTuple_Type, &kw_seq, &PyTuple_Type,
                          &fn_seq))
        return NULL;
    if (cap < 0) {
        PyErr_SetString(PyExc_ValueError, "negative cap");
        goto done;
    }
    if (load_table(kw_seq, &kw) < 0 || load_table(fn_seq, &fn) < 0)
        goto done;
    out = PyBytes_FromStringAndSize(NULL, cap);
    if (out == NULL)
        goto done;
    {
        const uint8_t *src = (const uint8_t *)in.buf;
        size_t len = (size_t)in.len;
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        got = detokenise(src, len, dst, (size_t)cap, &kw, &fn);
        Py_END_ALLOW_THREADS
    }
    if ((Py_ssize_t)got != cap && _PyBytes_Resize(&out, (Py_ssize_t)got) < 0)
        out = NULL;
done:
    PyMem_Free(kw.names);
    PyMem_Free(fn.names);
    PyBuffer_Release(&in);
    return out;
}

static PyMethodDef methods[] = {
    {"decrypt_ea05", py_decrypt_ea05, METH_VARARGS,
     "decrypt_ea05(data, seed) -> data XOR the EA05 (MT19937) keystream."},
    {"decrypt_ea06", py_decrypt_ea06, METH_VARARGS,
     "decrypt_ea06(data, seed) -> data XOR the EA06 keystream."},
    {"decompress", py_decompress, METH_VARARGS,
     "decompress(data, version, usize, cap) -> LZSS output (at most cap bytes).\n"
     "data starts at the 8-byte 'EA0x' + size header; the prefix is returned on damage."},
    {"detokenise", py_detokenise, METH_VARARGS,
     "detokenise(data, cap, keywords, functions) -> an EA06 script's text (at most cap\n"
     "bytes); keywords and functions are tuples of bytes indexed by token id."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_autoit, "AutoIt v3 script keystreams and LZSS.", methods)
