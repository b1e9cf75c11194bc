/*
 * The two NSIS compressors that no Python library reads:
 *
 * - NSIS' deflate: raw deflate whose stored blocks carry only LEN (no ~LEN check word).
 *   Streams made by a stock zlib (with ~LEN) are recognised and read too.
 * - NSIS' bzip2: no "BZh" stream header, a one-byte block mark ('1' = block, 0x17 = end)
 *   instead of the 48-bit magics, no CRCs, no randomisation, 900k blocks.
 *
 * Both are exposed as a pull decoder, Stream(data, kind).read(n), so a solid archive can
 * be cut into items of bounded size without holding its whole output. Every read of the
 * input is bounds-checked, every write is bounded by the size asked for, the GIL is
 * released while decoding, and a damaged stream ends (failed = True) after the bytes
 * that could be decoded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

/* Bit readers: vg_bits (_common.h), LSB-first for deflate, MSB-first for bzip2. */

/* ------------------------------------------------------------------ inflate */

#define WSIZE 32768u
#define MAXBITS 15

typedef struct {
    uint16_t count[MAXBITS + 1];
    uint16_t symbol[320];
} huff_t;

static const uint16_t len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195,
                                      227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                       193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
                                       6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* canonical code from lengths; 0 = usable (incomplete codes allowed, as zlib does for
 * single-distance trees), -1 = over-subscribed */
static int huff_build(huff_t *h, const uint8_t *lengths, unsigned int n)
{
    uint16_t offs[MAXBITS + 1];
    unsigned int i;
    int left = 1;
    memset(h->count, 0, sizeof(h->count));
    for (i = 0; i < n; i++)
        h->count[lengths[i]]++;
    if (h->count[0] == n)
        return 0;
    for (i = 1; i <= MAXBITS; i++) {
        left <<= 1;
        left -= h->count[i];
        if (left < 0)
            return -1;
    }
    offs[1] = 0;
    for (i = 1; i < MAXBITS; i++)
        offs[i + 1] = (uint16_t)(offs[i] + h->count[i]);
    for (i = 0; i < n; i++)
        if (lengths[i])
            h->symbol[offs[lengths[i]]++] = (uint16_t)i;
    return 0;
}

static int huff_decode(vg_bits *b, const huff_t *h)
{
    int code = 0, first = 0, index = 0;
    unsigned int len;
    for (len = 1; len <= MAXBITS; len++) {
        int count;
        code |= (int)vg_bits_lsb(b, 1);
        if (b->error)
            return -1;
        count = h->count[len];
        if (code - count < first)
            return h->symbol[index + (code - first)];
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return -1;
}

typedef struct {
    vg_bits bits;
    int in_block;     /* 0: between blocks, 1: stored, 2: huffman */
    int last;
    size_t stored_left;
    huff_t lit, dist;
    uint8_t window[WSIZE];
    size_t wpos;
    uint64_t total;
    size_t copy_left;
    size_t copy_dist;
} inflate_t;

static void inf_put(inflate_t *s, uint8_t c)
{
    s->window[s->wpos] = c;
    s->wpos = (s->wpos + 1) & (WSIZE - 1);
    s->total++;
}

static int inf_fixed(inflate_t *s)
{
    uint8_t lengths[320];
    unsigned int i;
    for (i = 0; i < 144; i++)
        lengths[i] = 8;
    for (; i < 256; i++)
        lengths[i] = 9;
    for (; i < 280; i++)
        lengths[i] = 7;
    for (; i < 288; i++)
        lengths[i] = 8;
    huff_build(&s->lit, lengths, 288);
    for (i = 0; i < 30; i++)
        lengths[i] = 5;
    huff_build(&s->dist, lengths, 30);
    return 0;
}

static int inf_dynamic(inflate_t *s)
{
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint8_t lengths[320];
    unsigned int nlen, ndist, ncode, i;
    huff_t lencode;
    vg_bits *b = &s->bits;
    nlen = vg_bits_lsb(b, 5) + 257;
    ndist = vg_bits_lsb(b, 5) + 1;
    ncode = vg_bits_lsb(b, 4) + 4;
    if (b->error || nlen > 286 || ndist > 30)
        return -1;
    memset(lengths, 0, sizeof(lengths));
    for (i = 0; i < ncode; i++)
        lengths[order[i]] = (uint8_t)vg_bits_lsb(b, 3);
    if (b->error || huff_build(&lencode, lengths, 19) < 0)
        return -1;
    i = 0;
    while (i < nlen + ndist) {
        int sym = huff_decode(b, &lencode);
        unsigned int rep;
        uint8_t val = 0;
        if (sym < 0)
            return -1;
        if (sym < 16) {
            lengths[i++] = (uint8_t)sym;
            continue;
        }
        if (sym == 16) {
            if (i == 0)
                return -1;
            val = lengths[i - 1];
            rep = 3 + vg_bits_lsb(b, 2);
        } else if (sym == 17) {
            rep = 3 + vg_bits_lsb(b, 3);
        } else {
            rep = 11 + vg_bits_lsb(b, 7);
        }
        if (b->error || i + rep > nlen + ndist)
            return -1;
        while (rep--)
            lengths[i++] = val;
    }
    if (lengths[256] == 0)
        return -1;
    if (huff_build(&s->lit, lengths, nlen) < 0 || huff_build(&s->dist, lengths + nlen, ndist) < 0)
        return -1;
    return 0;
}

/* Produce up to n bytes into out; returns the count; sets *end at the end of the stream
 * and *bad on damage. */
static size_t inflate_read(inflate_t *s, uint8_t *out, size_t n, int *end, int *bad)
{
    vg_bits *b = &s->bits;
    size_t got = 0;
    while (got < n) {
        if (s->copy_left) {
            uint8_t c = s->window[(s->wpos - s->copy_dist) & (WSIZE - 1)];
            inf_put(s, c);
            out[got++] = c;
            s->copy_left--;
            continue;
        }
        if (s->in_block == 0) {
            uint32_t type;
            if (s->last) {
                *end = 1;
                break;
            }
            s->last = (int)vg_bits_lsb(b, 1);
            type = vg_bits_lsb(b, 2);
            if (b->error)
                goto broken;
            if (type == 0) {
                uint32_t len;
                /* drop to a byte boundary, then LEN; NSIS writes no ~LEN */
                b->acc >>= b->cnt & 7u;
                b->cnt -= b->cnt & 7u;
                len = vg_bits_lsb(b, 16);
                if (b->error)
                    goto broken;
                /* a stock zlib stream: the next word is ~LEN; step over it */
                if (b->cnt == 0 && b->pos + 2 <= b->len &&
                    (uint32_t)(b->src[b->pos] | (b->src[b->pos + 1] << 8)) == (~len & 0xffffu))
                    b->pos += 2;
                else if (b->cnt == 16 && (uint32_t)(b->acc & 0xffffu) == (~len & 0xffffu))
                    (void)vg_bits_lsb(b, 16);
                s->stored_left = len;
                s->in_block = 1;
            } else if (type == 1) {
                inf_fixed(s);
                s->in_block = 2;
            } else if (type == 2) {
                if (inf_dynamic(s) < 0)
                    goto broken;
                s->in_block = 2;
            } else {
                goto broken;
            }
            continue;
        }
        if (s->in_block == 1) {
            uint8_t c;
            if (!s->stored_left) {
                s->in_block = 0;
                continue;
            }
            if (b->cnt >= 8) { /* bytes already in the bit buffer come first */
                c = (uint8_t)vg_bits_lsb(b, 8);
            } else {
                if (b->pos >= b->len)
                    goto broken;
                c = b->src[b->pos++];
            }
            inf_put(s, c);
            out[got++] = c;
            s->stored_left--;
            continue;
        }
        {
            int sym = huff_decode(b, &s->lit);
            if (sym < 0)
                goto broken;
            if (sym < 256) {
                inf_put(s, (uint8_t)sym);
                out[got++] = (uint8_t)sym;
            } else if (sym == 256) {
                s->in_block = 0;
            } else {
                int dsym;
                size_t len, dist;
                sym -= 257;
                if (sym >= 29)
                    goto broken;
                len = len_base[sym] + vg_bits_lsb(b, len_extra[sym]);
                dsym = huff_decode(b, &s->dist);
                if (dsym < 0 || dsym >= 30)
                    goto broken;
                dist = dist_base[dsym] + vg_bits_lsb(b, dist_extra[dsym]);
                if (b->error || dist > s->total || dist > WSIZE)
                    goto broken;
                s->copy_left = len;
                s->copy_dist = dist;
            }
        }
    }
    return got;
broken:
    *bad = 1;
    *end = 1;
    return got;
}

/* ------------------------------------------------------------------ bzip2 (NSIS) */

#define BZ_BLOCK 900000u
#define BZ_GROUP 50
#define BZ_MAXLEN 20
#define BZ_MAXSYM 258
#define BZ_MAXSEL 18002

typedef struct {
    vg_bits bits;
    uint32_t *tt;       /* BZ_BLOCK words: byte in the low 8 bits, link above */
    uint32_t nblock;
    uint32_t used;      /* bytes of the block emitted from the BWT */
    uint32_t tpos;
    int last;           /* previous byte (-1: none) */
    int run;            /* how many times it repeated so far */
    uint32_t repeat;    /* pending copies of the previous byte */
    int active;
    int finished;
} bzip2_t;

typedef struct {
    int32_t limit[BZ_MAXLEN + 2];
    int32_t base[BZ_MAXLEN + 2];
    int32_t perm[BZ_MAXSYM];
    int min_len;
    int alpha;
} bzhuff_t;

static void bz_tables(bzhuff_t *h, const uint8_t *len, int alpha)
{
    int i, l, pp = 0, minl = 32, maxl = 0;
    int32_t count[BZ_MAXLEN + 2];
    int32_t vec = 0;
    for (i = 0; i < alpha; i++) {
        if (len[i] > maxl)
            maxl = len[i];
        if (len[i] < minl)
            minl = len[i];
    }
    for (l = minl; l <= maxl; l++)
        for (i = 0; i < alpha; i++)
            if (len[i] == l)
                h->perm[pp++] = i;
    memset(count, 0, sizeof(count));
    for (i = 0; i < alpha; i++)
        count[len[i]]++;
    for (l = 0; l < BZ_MAXLEN + 2; l++) {
        h->limit[l] = -1;
        h->base[l] = 0;
    }
    /* base[l]: first code of length l minus the index of its first symbol in perm */
    pp = 0;
    for (l = minl; l <= maxl; l++) {
        h->base[l] = pp - vec;   /* symbol index = code + base */
        vec += count[l];
        pp += count[l];
        h->limit[l] = vec - 1;
        vec <<= 1;
    }
    h->min_len = minl;
    h->alpha = alpha;
}

static int bz_symbol(vg_bits *b, const bzhuff_t *h)
{
    int l = h->min_len;
    int32_t code = (int32_t)vg_bits_msb(b, (unsigned int)l);
    while (!b->error) {
        if (l > BZ_MAXLEN)
            return -1;
        if (code <= h->limit[l]) {
            int32_t idx = code + h->base[l];
            if (idx < 0 || idx >= h->alpha)
                return -1;
            return h->perm[idx];
        }
        code = (code << 1) | (int32_t)vg_bits_msb(b, 1);
        l++;
    }
    return -1;
}

/* decode one block (after its '1' mark) into tt; 0 on success */
static int bz_block(bzip2_t *s)
{
    vg_bits *b = &s->bits;
    uint8_t seq[256], mtf[256], len[6][BZ_MAXSYM], order[6];
    uint8_t *selectors = NULL;
    bzhuff_t *tables = NULL;
    uint32_t counts[256], orig, i, j, n_inuse = 0, used16, nsel, nsel_kept;
    int ngroups, alpha, eob, rc = -1;
    uint32_t nblock = 0, run = 0, weight = 1;
    int group = -1, left = 0;

    orig = vg_bits_msb(b, 24);
    used16 = vg_bits_msb(b, 16);
    if (b->error)
        return -1;
    for (i = 0; i < 16; i++) {
        if (used16 & (0x8000u >> i)) {
            uint32_t bitsv = vg_bits_msb(b, 16);
            for (j = 0; j < 16; j++)
                if (bitsv & (0x8000u >> j))
                    seq[n_inuse++] = (uint8_t)(i * 16 + j);
        }
    }
    if (b->error || n_inuse == 0)
        return -1;
    alpha = (int)n_inuse + 2;
    eob = (int)n_inuse + 1;
    ngroups = (int)vg_bits_msb(b, 3);
    nsel = vg_bits_msb(b, 15);
    if (b->error || ngroups < 2 || ngroups > 6 || nsel < 1)
        return -1;
    selectors = (uint8_t *)malloc(BZ_MAXSEL);
    tables = (bzhuff_t *)calloc(6, sizeof(bzhuff_t));
    if (selectors == NULL || tables == NULL)
        goto done;
    for (i = 0; i < (uint32_t)ngroups; i++)
        order[i] = (uint8_t)i;
    nsel_kept = nsel > BZ_MAXSEL ? BZ_MAXSEL : nsel;
    for (i = 0; i < nsel; i++) {
        uint32_t k = 0;
        uint8_t v;
        while (vg_bits_msb(b, 1)) {
            if (b->error || ++k >= (uint32_t)ngroups)
                goto done;
        }
        if (b->error)
            goto done;
        v = order[k];
        for (; k > 0; k--)
            order[k] = order[k - 1];
        order[0] = v;
        if (i < nsel_kept)
            selectors[i] = v;
    }
    for (i = 0; i < (uint32_t)ngroups; i++) {
        int cur = (int)vg_bits_msb(b, 5);
        int sym;
        for (sym = 0; sym < alpha; sym++) {
            for (;;) {
                if (b->error || cur < 1 || cur > BZ_MAXLEN)
                    goto done;
                if (!vg_bits_msb(b, 1))
                    break;
                cur += vg_bits_msb(b, 1) ? -1 : 1;
            }
            len[i][sym] = (uint8_t)cur;
        }
        bz_tables(&tables[i], len[i], alpha);
    }
    for (i = 0; i < 256; i++) {
        mtf[i] = (uint8_t)i;
        counts[i] = 0;
    }
    nsel = 0;
    for (;;) {
        int sym;
        if (left == 0) {
            group++;
            if ((uint32_t)group >= nsel_kept)
                goto done;
            left = BZ_GROUP;
        }
        left--;
        sym = bz_symbol(b, &tables[selectors[group]]);
        if (sym < 0)
            goto done;
        if (sym == 0 || sym == 1) { /* RUNA / RUNB: a run of the front byte */
            if (weight > (1u << 21))
                goto done;
            run += weight << sym;
            weight <<= 1;
            continue;
        }
        if (run) {
            uint8_t c = seq[mtf[0]];
            if (run > BZ_BLOCK - nblock)
                goto done;
            counts[c] += run;
            while (run--)
                s->tt[nblock++] = c;
            run = 0;
        }
        weight = 1;
        if (sym == eob)
            break;
        {
            uint32_t k = (uint32_t)sym - 1;
            uint8_t v;
            if (k >= n_inuse || nblock >= BZ_BLOCK)
                goto done;
            v = mtf[k];
            memmove(mtf + 1, mtf, k);
            mtf[0] = v;
            counts[seq[v]]++;
            s->tt[nblock++] = seq[v];
        }
    }
    if (orig >= nblock)
        goto done;
    {
        uint32_t start[256], sum = 0;
        for (i = 0; i < 256; i++) {
            start[i] = sum;
            sum += counts[i];
        }
        for (i = 0; i < nblock; i++) {
            uint8_t c = (uint8_t)(s->tt[i] & 0xffu);
            s->tt[start[c]++] |= i << 8;
        }
    }
    s->nblock = nblock;
    s->used = 0;
    s->tpos = s->tt[orig] >> 8;
    s->last = -1;
    s->run = 0;
    rc = 0;
done:
    free(selectors);
    free(tables);
    return rc;
}

static size_t bzip2_read(bzip2_t *s, uint8_t *out, size_t n, int *end, int *bad)
{
    size_t got = 0;
    while (got < n) {
        if (s->repeat) {
            out[got++] = (uint8_t)s->last;
            s->repeat--;
            continue;
        }
        if (s->active && s->used < s->nblock) {
            uint32_t c;
            if (s->tpos >= s->nblock)
                goto broken;
            s->tpos = s->tt[s->tpos];
            c = s->tpos & 0xffu;
            s->tpos >>= 8;
            s->used++;
            if (s->run == 4) { /* after four equal bytes: a repeat count */
                s->repeat = c;
                s->run = 0;
                continue;
            }
            if ((int)c == s->last) {
                s->run++;
            } else {
                s->last = (int)c;
                s->run = 1;
            }
            out[got++] = (uint8_t)c;
            continue;
        }
        {
            uint32_t mark;
            s->active = 0;
            if (s->finished) {
                *end = 1;
                break;
            }
            mark = vg_bits_msb(&s->bits, 8);
            if (s->bits.error)
                goto broken;
            if (mark == 0x17) {
                s->finished = 1;
                *end = 1;
                break;
            }
            if (mark != 0x31)
                goto broken;
            if (s->tt == NULL) {
                s->tt = (uint32_t *)malloc(sizeof(uint32_t) * BZ_BLOCK);
                if (s->tt == NULL)
                    goto broken;
            }
            if (bz_block(s) < 0)
                goto broken;
            s->active = 1;
        }
    }
    return got;
broken:
    *bad = 1;
    *end = 1;
    return got;
}

/* ------------------------------------------------------------------ Python type */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int have_view;
    int kind; /* 0: deflate, 1: bzip2 */
    inflate_t *inf;
    bzip2_t *bz;
    int end;
    int bad;
} StreamObject;

static void stream_dealloc(StreamObject *self)
{
    if (self->have_view)
        PyBuffer_Release(&self->view);
    if (self->bz != NULL)
        free(self->bz->tt);
    PyMem_Free(self->inf);
    PyMem_Free(self->bz);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int stream_init(StreamObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"data", "kind", NULL};
    const char *kind = NULL;
    if (self->have_view) {
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*s", kwlist, &self->view, &kind))
        return -1;
    self->have_view = 1;
    if (strcmp(kind, "deflate") == 0) {
        self->kind = 0;
        self->inf = (inflate_t *)PyMem_Calloc(1, sizeof(inflate_t));
        if (self->inf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->inf->bits.src = (const uint8_t *)self->view.buf;
        self->inf->bits.len = (size_t)self->view.len;
    } else if (strcmp(kind, "bzip2") == 0) {
        self->kind = 1;
        self->bz = (bzip2_t *)PyMem_Calloc(1, sizeof(bzip2_t));
        if (self->bz == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->bz->bits.src = (const uint8_t *)self->view.buf;
        self->bz->bits.len = (size_t)self->view.len;
        self->bz->last = -1;
    } else {
        PyErr_SetString(PyExc_ValueError, "kind must be 'deflate' or 'bzip2'");
        return -1;
    }
    return 0;
}

static PyObject *stream_read(StreamObject *self, PyObject *args)
{
    Py_ssize_t n;
    PyObject *out;
    size_t got = 0;
    int end = self->end, bad = self->bad;
    if (!PyArg_ParseTuple(args, "n", &n))
        return NULL;
    if (!self->have_view) {
        PyErr_SetString(PyExc_RuntimeError, "not initialised");
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    if (self->end)
        return PyBytes_FromStringAndSize(NULL, 0);
    out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    {
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        if (self->kind == 0)
            got = inflate_read(self->inf, dst, (size_t)n, &end, &bad);
        else
            got = bzip2_read(self->bz, dst, (size_t)n, &end, &bad);
        Py_END_ALLOW_THREADS
    }
    self->end = end;
    self->bad = bad;
    if ((Py_ssize_t)got != n && _PyBytes_Resize(&out, (Py_ssize_t)got) < 0)
        return NULL;
    return out;
}

static PyObject *stream_get_eof(StreamObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->end);
}

static PyObject *stream_get_failed(StreamObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->bad);
}

static PyMethodDef stream_methods[] = {
    {"read", (PyCFunction)stream_read, METH_VARARGS,
     "read(n) -> up to n decoded bytes (fewer at the end or where the stream breaks)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stream_getset[] = {
    {"eof", (getter)stream_get_eof, NULL, "the stream ended (or broke)", NULL},
    {"failed", (getter)stream_get_failed, NULL, "the stream broke", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vigil.native._nsis.Stream",
    .tp_basicsize = sizeof(StreamObject),
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stream(data, kind) -- pull decoder for NSIS 'deflate' or 'bzip2' data.",
    .tp_methods = stream_methods,
    .tp_getset = stream_getset,
    .tp_init = (initproc)stream_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_nsis", "NSIS' deflate and bzip2 variants.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__nsis(void)
{
    PyObject *m;
    if (PyType_Ready(&StreamType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&StreamType);
    if (PyModule_AddObject(m, "Stream", (PyObject *)&StreamType) < 0) {
        Py_DECREF(&StreamType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
