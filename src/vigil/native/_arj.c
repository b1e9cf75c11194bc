/*
 * ARJ member decompression: methods 1-3 (LZ77 with static Huffman blocks, the LHA-style
 * coder with a 26624-byte dictionary) and method 4 ("fastest": LZ77 with unary-prefixed
 * lengths and positions). Written from the published descriptions of the format.
 *
 * Both coders read an MSB-first bit stream. Methods 1-3 send blocks: a 16-bit symbol
 * count, a table of code lengths for the code-length code, the literal/length code
 * lengths (coded with it and with run lengths of zeros), and the position code lengths.
 * Canonical Huffman codes are decoded through a 64K-entry table indexed by the next 16
 * bits. As in libclamav, a code table must be complete, and positions before the start
 * of the output read zeros (a fresh dictionary).
 *
 * Every read is checked against the input and every write against the output cap; each
 * decoded symbol writes at least one byte, and reading stops soon after the input is
 * exhausted, so the work is bounded. A damaged stream yields the bytes decoded before the
 * damage.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

#define DICSIZ 26624u
#define THRESHOLD 3u
#define NC 510u /* 256 literals + lengths 3..256 */
#define NP 17u  /* position codes */
#define NT 19u  /* code-length codes */
#define NPT 19u
#define CBIT 9
#define PBIT 5
#define TBIT 5
#define NO_SYMBOL 0xFFFFFFFFu
#define TABLE_SIZE 65536u
/* bits read past the end of the input (as zeros) before decoding gives up */
#define OVERRUN_BITS 64u

typedef struct {
    const uint8_t *src;
    size_t len;
    size_t pos;
    uint64_t acc;     /* pending bits, the next one highest among the low ``cnt`` bits */
    unsigned cnt;     /* pending bits */
    uint64_t overrun; /* zero bits supplied past the end of the input */
} bits_t;

static void refill(bits_t *b)
{
    while (b->cnt <= 48) {
        uint64_t byte = 0;
        if (b->pos < b->len)
            byte = b->src[b->pos++];
        else
            b->overrun += 8;
        b->acc = (b->acc << 8) | byte;
        b->cnt += 8;
    }
}

/* The next ``n`` (<= 16) bits without consuming them. */
static unsigned peek(bits_t *b, unsigned n)
{
    if (n == 0)
        return 0;
    if (b->cnt < n)
        refill(b);
    return (unsigned)(b->acc >> (b->cnt - n)) & ((1u << n) - 1u);
}

static void skip(bits_t *b, unsigned n)
{
    if (b->cnt < n)
        refill(b);
    b->cnt -= n;
}

static unsigned get_bits(bits_t *b, unsigned n)
{
    unsigned v = peek(b, n);
    skip(b, n);
    return v;
}

/* Too far past the end of the input: the stream is damaged or truncated. */
static int exhausted(const bits_t *b)
{
    return b->overrun > OVERRUN_BITS + 64u;
}

/* A canonical Huffman code: a constant symbol (no bits), or a table over 16-bit peeks. */
typedef struct {
    uint32_t constant; /* NO_SYMBOL when the table is used */
    uint32_t *table;   /* (length << 16 | symbol) or NO_SYMBOL */
} code_t;

/* Builds the table for ``n`` lengths; -1 unless the code is complete (libclamav's rule). */
static int make_table(code_t *c, const uint8_t *lens, unsigned n)
{
    unsigned count[17] = {0}, next[18], i, len;
    uint32_t total = 0;

    for (i = 0; i < n; i++) {
        if (lens[i] > 16)
            return -1;
        count[lens[i]]++;
    }
    for (len = 1; len <= 16; len++)
        total += (uint32_t)count[len] << (16 - len);
    if (total != TABLE_SIZE)
        return -1;
    next[1] = 0;
    for (len = 1; len <= 16; len++)
        next[len + 1] = next[len] + (count[len] << (16 - len));
    for (i = 0; i < n; i++) {
        unsigned start, end, k;
        len = lens[i];
        if (len == 0)
            continue;
        start = next[len];
        end = start + (1u << (16 - len));
        next[len] = end;
        for (k = start; k < end; k++)
            c->table[k] = (uint32_t)len << 16 | i;
    }
    c->constant = NO_SYMBOL;
    return 0;
}

static int decode(bits_t *b, const code_t *c)
{
    uint32_t e;
    if (c->constant != NO_SYMBOL)
        return (int)c->constant;
    e = c->table[peek(b, 16)];
    if (e == NO_SYMBOL)
        return -1;
    skip(b, e >> 16);
    return (int)(e & 0xFFFFu);
}

typedef struct {
    bits_t b;
    code_t pt, c;
    uint8_t pt_len[NPT];
    uint8_t c_len[NC];
} lha_t;

static int read_pt_len(lha_t *s, unsigned nn, unsigned nbit, int special)
{
    unsigned n = get_bits(&s->b, nbit), i = 0;
    if (n == 0) {
        s->pt.constant = get_bits(&s->b, nbit);
        memset(s->pt_len, 0, sizeof(s->pt_len));
        return 0;
    }
    while (i < n && i < NPT) {
        unsigned c = peek(&s->b, 3);
        if (c == 7) {
            unsigned window = peek(&s->b, 16), mask = 1u << 12;
            while (mask & window) {
                mask >>= 1;
                c++;
            }
            if (c > 16)
                return -1;
        }
        skip(&s->b, c < 7 ? 3 : c - 3);
        s->pt_len[i++] = (uint8_t)c;
        if ((int)i == special) {
            unsigned zeros = get_bits(&s->b, 2);
            while (zeros-- > 0 && i < NPT)
                s->pt_len[i++] = 0;
        }
    }
    while (i < NPT)
        s->pt_len[i++] = 0;
    return make_table(&s->pt, s->pt_len, nn);
}

static int read_c_len(lha_t *s)
{
    unsigned n = get_bits(&s->b, CBIT), i = 0;
    if (n == 0) {
        s->c.constant = get_bits(&s->b, CBIT);
        memset(s->c_len, 0, sizeof(s->c_len));
        return s->c.constant < NC ? 0 : -1;
    }
    while (i < n) {
        int c = decode(&s->b, &s->pt);
        if (c < 0 || c >= (int)NT || exhausted(&s->b))
            return -1;
        if (c <= 2) {
            unsigned run;
            if (c == 0)
                run = 1;
            else if (c == 1)
                run = get_bits(&s->b, 4) + 3;
            else
                run = get_bits(&s->b, CBIT) + 20;
            if (run > NC - i)
                return -1;
            while (run--)
                s->c_len[i++] = 0;
        } else {
            if (i >= NC)
                return -1;
            s->c_len[i++] = (uint8_t)(c - 2);
        }
    }
    while (i < NC)
        s->c_len[i++] = 0;
    return make_table(&s->c, s->c_len, NC);
}

typedef struct {
    const uint8_t *src;
    size_t srclen;
    int method;
    vg_out out;
} job_t;

static void run_lha(job_t *job)
{
    lha_t *s = calloc(1, sizeof(lha_t));
    uint32_t *tables = malloc(2u * TABLE_SIZE * sizeof(uint32_t));
    unsigned blocksize = 0;
    vg_out *o = &job->out;

    if (!s || !tables) {
        o->failed = 1;
        goto done;
    }
    s->b.src = job->src;
    s->b.len = job->srclen;
    s->pt.table = tables;
    s->c.table = tables + TABLE_SIZE;
    s->pt.constant = s->c.constant = 0;

    while (o->len < o->cap && !exhausted(&s->b)) {
        int c;
        if (blocksize == 0) {
            blocksize = get_bits(&s->b, 16);
            if (read_pt_len(s, NT, TBIT, 3) < 0 || read_c_len(s) < 0 ||
                read_pt_len(s, NT, PBIT, -1) < 0)
                break;
            if (blocksize == 0)
                blocksize = 65536; /* a 16-bit counter decremented from zero */
        }
        blocksize--;
        c = decode(&s->b, &s->c);
        if (c < 0 || c >= (int)NC)
            break;
        if (c < 256) {
            if (vg_out_put(o, (uint8_t)c) < 0)
                break;
        } else {
            size_t length = (size_t)c - (256u - THRESHOLD);
            int p = decode(&s->b, &s->pt);
            size_t dist;
            if (p < 0 || p >= (int)NP)
                break;
            dist = (size_t)p;
            if (p > 1)
                dist = ((size_t)1 << (p - 1)) + get_bits(&s->b, (unsigned)p - 1);
            dist += 1;
            if (dist > DICSIZ || vg_out_copy(o, dist, length) < 0)
                break;
        }
    }
done:
    free(tables);
    free(s);
}

static void run_fastest(job_t *job)
{
    bits_t b;
    vg_out *o = &job->out;

    memset(&b, 0, sizeof(b));
    b.src = job->src;
    b.len = job->srclen;
    while (o->len < o->cap && !exhausted(&b)) {
        unsigned c = 0, width, plus = 0, pwr = 1;
        for (width = 0; width < 7; width++) {
            if (!get_bits(&b, 1))
                break;
            plus += pwr;
            pwr <<= 1;
        }
        if (width)
            c = get_bits(&b, width);
        c += plus;
        if (c == 0) {
            if (vg_out_put(o, (uint8_t)get_bits(&b, 8)) < 0)
                break;
        } else {
            size_t length = c - 1 + THRESHOLD, dist;
            unsigned pos = 0;
            plus = 0;
            pwr = 1u << 9;
            for (width = 9; width < 13; width++) {
                if (!get_bits(&b, 1))
                    break;
                plus += pwr;
                pwr <<= 1;
            }
            pos = get_bits(&b, width) + plus;
            dist = (size_t)pos + 1;
            if (vg_out_copy(o, dist, length) < 0)
                break;
        }
    }
}

PyDoc_STRVAR(decode_doc,
             "decode(data, method, size, limit, /)\n--\n\n"
             "Decompress one ARJ member stored with ``method`` 1, 2, 3 or 4. Decoding stops\n"
             "after min(size, limit) bytes or where the stream ends or breaks; the bytes\n"
             "produced so far are returned. ValueError for any other method.");

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    Py_buffer in;
    int method;
    long long size, limit;
    job_t job;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*iLL:decode", &in, &method, &size, &limit))
        return NULL;
    if (method < 1 || method > 4 || limit < 0 || size < 0) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "method must be 1-4, size and limit >= 0");
        return NULL;
    }
    memset(&job, 0, sizeof(job));
    job.out.cap = (unsigned long long)size < (unsigned long long)limit ? (size_t)size
                                                                       : (size_t)limit;
    job.src = in.buf;
    job.srclen = (size_t)in.len;
    job.method = method;

    Py_BEGIN_ALLOW_THREADS;
    if (method == 4)
        run_fastest(&job);
    else
        run_lha(&job);
    Py_END_ALLOW_THREADS;

    PyBuffer_Release(&in);
    return vg_out_finish(&job.out);
}

static PyMethodDef methods[] = {
    {"decode", py_decode, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_arj, "ARJ member decompression (methods 1-4).", methods)
