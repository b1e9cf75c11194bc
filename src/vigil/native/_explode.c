/*
 * PKWARE "implode" decompression (ZIP method 6), written from the ZIP application note.
 *
 * An imploded member starts with two or three Shannon-Fano code tables (literals, when
 * general-purpose flag bit 2 is set; then lengths; then distances), each stored as a
 * count byte followed by (bit length, repeat) nibble pairs. The body is a bit stream read
 * LSB-first: a 1 bit introduces a literal (coded, or 8 raw bits without a literal tree),
 * a 0 bit a copy: the low 6 (4 KB window) or 7 (8 KB window: general-purpose flag bit 1)
 * distance bits raw, the high distance bits and the length coded (length 63 adds 8 raw
 * bits). Code bits come most significant first.
 *
 * The Shannon-Fano codes are assigned as the note describes (stable sort by length, codes
 * counted down from the longest); decoding uses one 64K-entry lookup table per tree, built
 * so that a shorter code and then a lower symbol wins, which is also what a sequential
 * search over the tree does for malformed (over-subscribed) tables. Copies reaching
 * before the start of the output produce zeros, as the reference decoders do.
 *
 * Every read is checked against the input length and every write against the output cap;
 * each loop iteration writes at least one byte, so the work is bounded by the cap. A
 * damaged stream yields the bytes decoded before the damage.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

#define NO_SYMBOL 0xFFFFu
#define TABLE_SIZE 65536u

typedef vg_bits bits_t; /* read LSB-first */

/* Reads ``n`` (<= 16) bits LSB-first; -1 when the input ends first. */
static int get_bits(bits_t *b, unsigned n)
{
    uint32_t v = vg_bits_lsb(b, n);
    return b->error ? -1 : (int)v;
}

/* A decoding table: one entry per 16-bit LSB-first peek. */
typedef struct {
    uint16_t *table; /* TABLE_SIZE entries: (length << 8 | symbol), or NO_SYMBOL */
} tree_t;

static unsigned reverse_bits(unsigned code, unsigned len)
{
    unsigned r = 0, i;
    for (i = 0; i < len; i++) {
        r = (r << 1) | (code & 1u);
        code >>= 1;
    }
    return r;
}

/*
 * Reads one stored tree of ``count`` symbols at the byte position of ``b`` (which must be
 * byte-aligned with an empty accumulator) and builds its lookup table. Returns 0, or -1
 * when the description is truncated or does not describe exactly ``count`` lengths.
 */
static int read_tree(bits_t *b, unsigned count, tree_t *t)
{
    uint8_t lens[256];
    uint8_t order[256];
    uint16_t codes[256];
    unsigned nbytes, i, filled = 0, j, k;
    uint16_t code = 0, inc = 0;
    unsigned last = 0;

    if (b->pos >= b->len)
        return -1;
    nbytes = (unsigned)b->src[b->pos++] + 1u;
    if (nbytes > count || b->len - b->pos < nbytes)
        return -1;
    for (i = 0; i < nbytes; i++) {
        unsigned v = b->src[b->pos++];
        unsigned bl = (v & 15u) + 1u, rep = (v >> 4) + 1u;
        if (rep > count - filled)
            return -1;
        while (rep--)
            lens[filled++] = (uint8_t)bl;
    }
    if (filled != count)
        return -1;

    /* stable sort of the symbols by bit length (insertion sort: at most 256 items) */
    for (i = 0; i < count; i++) {
        uint8_t s = (uint8_t)i;
        j = i;
        while (j > 0 && lens[order[j - 1]] > lens[s]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = s;
    }
    /* codes counted from the last (longest) entry, as the application note does */
    for (i = count; i-- > 0;) {
        unsigned s = order[i];
        code = (uint16_t)(code + inc);
        if (lens[s] != last) {
            last = lens[s];
            inc = (uint16_t)(1u << (16 - last));
        }
        codes[s] = code;
    }

    for (i = 0; i < TABLE_SIZE; i++)
        t->table[i] = NO_SYMBOL;
    /* longest first, highest symbol first: shorter codes and lower symbols overwrite */
    for (k = 16; k >= 1; k--) {
        for (i = count; i-- > 0;) {
            unsigned len, msb, rev, step, idx;
            if (lens[i] != k)
                continue;
            len = k;
            if (codes[i] & ((1u << (16 - len)) - 1u))
                continue; /* low bits set: a sequential search never matches it */
            msb = (unsigned)codes[i] >> (16 - len);
            rev = reverse_bits(msb, len);
            step = 1u << len;
            for (idx = rev; idx < TABLE_SIZE; idx += step)
                t->table[idx] = (uint16_t)(len << 8 | i);
        }
    }
    return 0;
}

/* Decodes one symbol; -1 at the end of the input or on an unassigned code. */
static int decode(bits_t *b, const tree_t *t)
{
    unsigned peek, len;
    uint16_t e;
    vg_bits_fill_lsb(b, 16);
    peek = (unsigned)(b->acc & 0xFFFFu);
    e = t->table[peek];
    if (e == NO_SYMBOL)
        return -1;
    len = e >> 8;
    if (len > b->cnt)
        return -1; /* the code would run past the end of the input */
    b->acc >>= len;
    b->cnt -= len;
    return (int)(e & 0xFFu);
}

typedef struct {
    const uint8_t *src;
    size_t srclen;
    int large_window;
    int literal_tree;
    vg_out out;
} job_t;

static void run(job_t *job)
{
    bits_t b;
    tree_t lit = {NULL}, lens = {NULL}, dists = {NULL};
    unsigned low_bits = job->large_window ? 7u : 6u;
    unsigned min_len = job->literal_tree ? 3u : 2u;
    vg_out *o = &job->out;

    memset(&b, 0, sizeof(b));
    b.src = job->src;
    b.len = job->srclen;

    lens.table = malloc(TABLE_SIZE * sizeof(uint16_t));
    dists.table = malloc(TABLE_SIZE * sizeof(uint16_t));
    if (job->literal_tree)
        lit.table = malloc(TABLE_SIZE * sizeof(uint16_t));
    if (!lens.table || !dists.table || (job->literal_tree && !lit.table)) {
        o->failed = 1;
        goto done;
    }
    if (job->literal_tree && read_tree(&b, 256, &lit) < 0)
        goto done;
    if (read_tree(&b, 64, &lens) < 0 || read_tree(&b, 64, &dists) < 0)
        goto done;

    while (o->len < o->cap) {
        int flag = get_bits(&b, 1);
        if (flag < 0)
            break;
        if (flag) {
            int c = job->literal_tree ? decode(&b, &lit) : get_bits(&b, 8);
            if (c < 0 || vg_out_put(o, (uint8_t)c) < 0)
                break;
        } else {
            int low = get_bits(&b, low_bits);
            int hi, l, extra;
            size_t dist;
            if (low < 0)
                break;
            hi = decode(&b, &dists);
            if (hi < 0)
                break;
            dist = (((size_t)hi << low_bits) | (size_t)low) + 1u;
            l = decode(&b, &lens);
            if (l < 0)
                break;
            if (l == 63) {
                extra = get_bits(&b, 8);
                if (extra < 0)
                    break;
                l += extra;
            }
            if (vg_out_copy(o, dist, (size_t)l + min_len) < 0) /* before the start: zeros */
                break;
        }
    }
done:
    free(lit.table);
    free(lens.table);
    free(dists.table);
}

PyDoc_STRVAR(explode_doc,
             "explode(data, flags, size, limit, /)\n--\n\n"
             "Decompress a ZIP method-6 (imploded) member. ``flags`` is the general-purpose\n"
             "bit flag (bit 1: 8 KB window, bit 2: literal tree). Decoding stops after\n"
             "``size`` bytes when size > 0, after ``limit`` bytes, or where the stream ends\n"
             "or breaks; the bytes produced so far are returned.");

static PyObject *py_explode(PyObject *self, PyObject *args)
{
    Py_buffer in;
    unsigned int flags;
    long long size, limit;
    job_t job;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*ILL:explode", &in, &flags, &size, &limit))
        return NULL;
    if (limit < 0) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "limit must not be negative");
        return NULL;
    }
    memset(&job, 0, sizeof(job));
    job.out.cap = (size_t)limit;
    if (size > 0 && (unsigned long long)size < (unsigned long long)limit)
        job.out.cap = (size_t)size;
    job.src = in.buf;
    job.srclen = (size_t)in.len;
    job.large_window = (flags & 2u) != 0;
    job.literal_tree = (flags & 4u) != 0;

    Py_BEGIN_ALLOW_THREADS;
    run(&job);
    Py_END_ALLOW_THREADS;

    PyBuffer_Release(&in);
    return vg_out_finish(&job.out);
}

static PyMethodDef methods[] = {
    {"explode", py_explode, METH_VARARGS, explode_doc},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_explode, "PKWARE implode (ZIP method 6) decompression.", methods)
