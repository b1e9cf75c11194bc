/*
 * The bulk parse of hash database lines (.hdb .hsb .mdb .imp and friends) for the common,
 * canonical form only, one block of a file at a time.
 *
 * Millions of lines arrive in a full database; parsing them in Python costs seconds. This
 * module cuts a block straight into the packed columns the loader keeps (raw digests,
 * 32-bit sizes, one blob of names with their end offsets), per digest width, in one pass
 * and without the GIL. It takes only what it can parse with certainty:
 *
 *   HASH:SIZE:NAME[:MINFL[:MAXFL]]   (SIZE:HASH:NAME... for section hashes)
 *
 * with a hash of 32, 40 or 64 hex digits, a size of 1 to 10 ASCII digits (or '*' with a
 * high enough MinFL), levels of ASCII digits only (or empty), a non-empty name without
 * " (Clam)", lines ending in LF (one CR before it allowed), '#' comments. Anything else
 * (a blank line, a NUL byte, a bad field, an over-long line...) makes it answer None, and
 * the caller parses that block with its general code, which applies every rule and names
 * the bad line. So the C code never has to produce an error message of its own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_common.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define HP_WIDTHS 3 /* digests of 16, 20 and 32 bytes */
#define HP_MAX_DIGITS 10
#define HP_MAX_FL_DIGITS 9

static const unsigned hp_width_bytes[HP_WIDTHS] = {16, 20, 32};

/* An output column: a bytes object allocated at an upper bound of what the block can
 * put in it (untouched pages cost no memory), cut to its length at the end. */
typedef struct {
    PyObject *obj;
    uint8_t *buf;
    size_t len;
    size_t cap;
} hp_buf;

static inline int hp_append(hp_buf *b, const void *src, size_t n)
{
    if (n > b->cap - b->len)
        return -1; /* cannot happen with the bounds of hp_open; checked all the same */
    memcpy(b->buf + b->len, src, n);
    b->len += n;
    return 0;
}

/* The columns of one digest width. */
typedef struct {
    hp_buf digests;
    hp_buf sizes; /* uint32, native order */
    hp_buf names; /* each name followed by the suffix */
    hp_buf ends;  /* uint64, native order: where each name ends in ``names`` */
    size_t rows;
} hp_cols;

/* The ignored names, as an open-addressing hash set of byte strings. */
typedef struct {
    const uint8_t **ptr;
    size_t *len;
    size_t mask; /* slots - 1; 0 slots when empty */
    size_t slots;
} hp_set;

static uint64_t hp_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int hp_set_has(const hp_set *s, const uint8_t *p, size_t n)
{
    size_t at;

    if (!s->slots)
        return 0;
    at = (size_t)hp_hash(p, n) & s->mask;
    while (s->ptr[at]) {
        if (s->len[at] == n && memcmp(s->ptr[at], p, n) == 0)
            return 1;
        at = (at + 1) & s->mask;
    }
    return 0;
}

static int hp_set_add(hp_set *s, const uint8_t *p, size_t n)
{
    size_t at = (size_t)hp_hash(p, n) & s->mask;

    while (s->ptr[at]) {
        if (s->len[at] == n && memcmp(s->ptr[at], p, n) == 0)
            return 0;
        at = (at + 1) & s->mask;
    }
    s->ptr[at] = p ? p : (const uint8_t *)"";
    s->len[at] = n;
    return 0;
}

typedef struct {
    const uint8_t *data;
    size_t start, end;
    int size_first;
    long star_min_fl; /* a '*' size needs MinFL >= this; < 0: no such rule */
    long flevel;
    size_t max_line;
    uint64_t max_size;
    const uint8_t *suffix;
    size_t suffix_len;
    const hp_set *ignored;
    /* results */
    hp_cols cols[HP_WIDTHS];
    int order[HP_WIDTHS]; /* width indexes in the order their first kept row came */
    int norder;
    size_t lines;        /* newlines passed */
    size_t max_rows;     /* no block of ``end - start`` bytes has more rows */
    PyThreadState *ts;   /* while the GIL is released */
    int overflow;        /* a column bound was wrong (a bug, reported as such) */
    size_t bad_at; /* offset of the line not taken (when the result is HP_UNUSUAL) */
} hp_job;

enum { HP_OK = 0, HP_UNUSUAL = 1, HP_NOMEM = 2 };

static int8_t hp_hexval[256];
static uint8_t hp_stop[256]; /* bytes that end the scan of a field */

static void hp_tables(void)
{
    int c;

    for (c = 0; c < 256; c++)
        hp_hexval[c] = -1;
    for (c = 0; c < 10; c++)
        hp_hexval['0' + c] = (int8_t)c;
    for (c = 0; c < 6; c++) {
        hp_hexval['a' + c] = (int8_t)(10 + c);
        hp_hexval['A' + c] = (int8_t)(10 + c);
    }
    memset(hp_stop, 0, sizeof(hp_stop));
    hp_stop[':'] = 1;
    hp_stop['\0'] = 1;
    hp_stop['\r'] = 1;
    hp_stop['\n'] = 1;
}

static int hp_has_clam(const uint8_t *p, size_t n)
{
    size_t i = 1; /* a '(' that a space precedes */

    while (i + 6 <= n) {
        const uint8_t *q = (const uint8_t *)memchr(p + i, '(', n - i);
        size_t k;

        if (!q)
            return 0;
        k = (size_t)(q - p);
        if (k + 6 <= n && p[k - 1] == ' ' && memcmp(q, "(Clam)", 6) == 0)
            return 1;
        i = k + 1;
    }
    return 0;
}

/* The end of a line's content at ``p`` (a LF, a CR before a LF or the block's end, or the
 * block's end): the offset after the line, or 0 when ``p`` holds anything else. */
static inline size_t hp_line_end(const uint8_t *d, size_t p, size_t end)
{
    if (p == end)
        return end;
    if (d[p] == '\n')
        return p + 1;
    if (d[p] == '\r' && (p + 1 == end || d[p + 1] == '\n'))
        return p + 1 == end ? end : p + 2;
    return 0;
}

/* Decode ``n`` hex digit pairs at ``src`` into ``out``: 0, or -1 when one is not hex. */
static inline int hp_unhex(const uint8_t *src, size_t n, uint8_t *out)
{
    int bad = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        int hi = hp_hexval[src[2 * i]], lo = hp_hexval[src[2 * i + 1]];
        bad |= hi | lo; /* -1 marks a non-hex byte */
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return bad < 0 ? -1 : 0;
}

/* A hash field at *p, ended by ':': its digest in ``out`` and its width index, or -1.
 * Exactly 32, 40 or 64 hex digits and a ':' (the hex is read up to each width in turn). */
static inline int hp_hash_field(const uint8_t *d, size_t *p, size_t end, uint8_t *out)
{
    const uint8_t *f = d + *p;
    size_t avail = end - *p;

    if (avail < 33 || hp_unhex(f, 16, out) < 0)
        return -1;
    if (f[32] == ':') {
        *p += 33;
        return 0;
    }
    if (avail < 41 || hp_unhex(f + 32, 4, out + 16) < 0)
        return -1;
    if (f[40] == ':') {
        *p += 41;
        return 1;
    }
    if (avail < 65 || hp_unhex(f + 40, 12, out + 20) < 0 || f[64] != ':')
        return -1;
    *p += 65;
    return 2;
}

/* A size field at *p, ended by ':': 1 to HP_MAX_DIGITS digits (value in *out) or '*'
 * (*star set); -1 for anything else. */
static inline int hp_size_field(const uint8_t *d, size_t *p, size_t end, uint64_t *out, int *star)
{
    size_t at = *p, n = 0;
    uint64_t v = 0;

    *star = 0;
    if (at < end && d[at] == '*') {
        *star = 1;
        n = 1;
    } else {
        while (at + n < end && n <= HP_MAX_DIGITS && (unsigned)d[at + n] - '0' <= 9) {
            v = v * 10 + ((unsigned)d[at + n] - '0');
            n++;
        }
        if (n < 1 || n > HP_MAX_DIGITS)
            return -1;
    }
    if (at + n >= end || d[at + n] != ':')
        return -1;
    *out = v;
    *p = at + n + 1;
    return 0;
}

/* A level field at *p (ended by ':' or the line's end): -1 when empty, else its value;
 * -2 for anything else. */
static inline long hp_level_field(const uint8_t *d, size_t *p, size_t end)
{
    size_t at = *p, n = 0;
    long v = 0;

    while (at + n < end && n <= HP_MAX_FL_DIGITS && (unsigned)d[at + n] - '0' <= 9) {
        v = v * 10 + (long)((unsigned)d[at + n] - '0');
        n++;
    }
    if (n > HP_MAX_FL_DIGITS)
        return -2;
    *p = at + n;
    return n ? v : -1;
}

/* Allocate the columns of width index ``w``, the GIL taken back meanwhile. */
static int hp_open(hp_job *job, int w)
{
    hp_cols *c = &job->cols[w];
    size_t wb = hp_width_bytes[w], rows = job->max_rows;
    size_t caps[4];
    hp_buf *bufs[4] = {&c->digests, &c->sizes, &c->names, &c->ends};
    int k, ok = 1;

    /* each cap below PY_SSIZE_T_MAX: rows >= 1, and every term at most a quarter of it */
    if (rows > (size_t)PY_SSIZE_T_MAX / 64 ||
        job->suffix_len > (size_t)PY_SSIZE_T_MAX / 4 / rows ||
        job->end - job->start > (size_t)PY_SSIZE_T_MAX / 4)
        return -1;
    caps[0] = rows * wb;
    caps[1] = rows * sizeof(uint32_t);
    caps[2] = (job->end - job->start) + rows * job->suffix_len;
    caps[3] = rows * sizeof(uint64_t);
    PyEval_RestoreThread(job->ts);
    for (k = 0; k < 4 && ok; k++) {
        bufs[k]->obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)caps[k]);
        if (!bufs[k]->obj) {
            ok = 0;
            break;
        }
        bufs[k]->buf = (uint8_t *)PyBytes_AS_STRING(bufs[k]->obj);
        bufs[k]->cap = caps[k];
        bufs[k]->len = 0;
    }
    if (!ok)
        PyErr_Clear();
    job->ts = PyEval_SaveThread();
    return ok ? 0 : -1;
}

/* Parse the block; HP_OK, HP_UNUSUAL (job->bad_at says where) or HP_NOMEM. */
static int hp_run(hp_job *job)
{
    const uint8_t *d = job->data;
    size_t pos = job->start;
    const size_t end = job->end;

    while (pos < end) {
        size_t p = pos, name_at, name_len, next;
        int w, star;
        uint64_t size;
        long minfl = -1, maxfl = -1;
        hp_cols *c;
        uint8_t digest[32];
        uint32_t size32;
        uint64_t name_end;

        job->bad_at = pos;
        if (d[pos] == '#') { /* a comment, whatever it holds */
            const uint8_t *nl = (const uint8_t *)memchr(d + pos, '\n', end - pos);
            pos = nl ? (size_t)(nl - d) + 1 : end;
            job->lines += nl != NULL;
            continue;
        }
        if (job->size_first) {
            if (hp_size_field(d, &p, end, &size, &star) < 0)
                return HP_UNUSUAL;
            if ((w = hp_hash_field(d, &p, end, digest)) < 0)
                return HP_UNUSUAL;
        } else {
            if ((w = hp_hash_field(d, &p, end, digest)) < 0)
                return HP_UNUSUAL;
            if (hp_size_field(d, &p, end, &size, &star) < 0)
                return HP_UNUSUAL;
        }
        name_at = p;
#ifdef __SSE2__
        while (end - p >= 16) { /* 16 bytes at a time: any of ':', LF, CR, NUL? */
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(d + p));
            __m128i hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(':')),
                             _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))),
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\r')),
                             _mm_cmpeq_epi8(v, _mm_setzero_si128())));
            int mask = _mm_movemask_epi8(hit);
            if (mask) {
                p += (size_t)__builtin_ctz((unsigned)mask);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && !hp_stop[d[p]])
            p++;
        name_len = p - name_at;
        if (p < end && d[p] == ':') {
            p++;
            if ((minfl = hp_level_field(d, &p, end)) == -2)
                return HP_UNUSUAL;
            if (p < end && d[p] == ':') {
                p++;
                if ((maxfl = hp_level_field(d, &p, end)) == -2)
                    return HP_UNUSUAL;
            }
        }
        /* the content ends here: a line's end must follow (CR, NUL, a sixth field... not) */
        if (p - pos > job->max_line || !(next = hp_line_end(d, p, end)))
            return HP_UNUSUAL;
        if (star) {
            if (job->star_min_fl >= 0 && (minfl < 0 || minfl < job->star_min_fl))
                return HP_UNUSUAL;
            size = 0;
        } else if (size < 1 || size > job->max_size) {
            return HP_UNUSUAL;
        }
        if (name_len == 0 || hp_has_clam(d + name_at, name_len))
            return HP_UNUSUAL;

        pos = next;
        job->lines += d[next - 1] == '\n';
        if (minfl >= 0 && minfl > job->flevel)
            continue;
        if (maxfl >= 0 && maxfl < job->flevel)
            continue;
        if (hp_set_has(job->ignored, d + name_at, name_len))
            continue;

        c = &job->cols[w];
        if (!c->rows) {
            if (hp_open(job, w) < 0)
                return HP_NOMEM;
            job->order[job->norder++] = w;
        }
        size32 = (uint32_t)size;
        name_end = (uint64_t)(c->names.len + name_len + job->suffix_len);
        if (hp_append(&c->digests, digest, hp_width_bytes[w]) < 0 ||
            hp_append(&c->sizes, &size32, sizeof(size32)) < 0 ||
            hp_append(&c->names, d + name_at, name_len) < 0 ||
            hp_append(&c->names, job->suffix, job->suffix_len) < 0 ||
            hp_append(&c->ends, &name_end, sizeof(name_end)) < 0) {
            job->overflow = 1;
            return HP_NOMEM;
        }
        c->rows++;
    }
    return HP_OK;
}

static void hp_free(hp_job *job)
{
    int w;

    for (w = 0; w < HP_WIDTHS; w++) {
        Py_CLEAR(job->cols[w].digests.obj);
        Py_CLEAR(job->cols[w].sizes.obj);
        Py_CLEAR(job->cols[w].names.obj);
        Py_CLEAR(job->cols[w].ends.obj);
    }
}

/* The column as a bytes object of its length (a new reference; the job keeps none). */
static PyObject *hp_bytes(hp_buf *b)
{
    PyObject *obj = b->obj;

    b->obj = NULL;
    if (_PyBytes_Resize(&obj, (Py_ssize_t)b->len) < 0)
        return NULL;
    return obj;
}

/* Fill ``set`` from a tuple of bytes (the pointers stay valid while the tuple lives). */
static int hp_set_fill(hp_set *set, PyObject *names)
{
    Py_ssize_t n = PyTuple_GET_SIZE(names), i;
    size_t slots = 16;

    set->slots = 0;
    set->mask = 0;
    set->ptr = NULL;
    set->len = NULL;
    if (n == 0)
        return 0;
    while (slots < (size_t)n * 2)
        slots *= 2;
    set->ptr = (const uint8_t **)calloc(slots, sizeof(*set->ptr));
    set->len = (size_t *)calloc(slots, sizeof(*set->len));
    if (!set->ptr || !set->len) {
        PyErr_NoMemory();
        return -1;
    }
    set->slots = slots;
    set->mask = slots - 1;
    for (i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(names, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "ignored names must be bytes");
            return -1;
        }
        hp_set_add(set, (const uint8_t *)PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
    }
    return 0;
}

static PyObject *parse_block(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end, max_line;
    int size_first;
    long star_min_fl, flevel;
    unsigned long long max_size;
    const char *suffix;
    Py_ssize_t suffix_len;
    PyObject *ignored;
    hp_set set;
    hp_job job;
    int rc, k;
    PyObject *out = NULL;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*nnpllnKy#O!", &view, &start, &end, &size_first,
                          &star_min_fl, &flevel, &max_line, &max_size, &suffix, &suffix_len,
                          &PyTuple_Type, &ignored))
        return NULL;
    if (start < 0 || end < start || end > view.len || max_line < 0 || max_size > UINT32_MAX) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad block bounds or limits");
        return NULL;
    }
    if (hp_set_fill(&set, ignored) < 0) {
        free(set.ptr);
        free(set.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    memset(&job, 0, sizeof(job));
    job.data = (const uint8_t *)view.buf;
    job.start = (size_t)start;
    job.end = (size_t)end;
    job.size_first = size_first;
    job.star_min_fl = star_min_fl;
    job.flevel = flevel;
    job.max_line = (size_t)max_line;
    job.max_size = (uint64_t)max_size;
    job.suffix = (const uint8_t *)suffix;
    job.suffix_len = (size_t)suffix_len;
    job.ignored = &set;
    job.max_rows = ((size_t)end - (size_t)start) / 36 + 1; /* "<32 hex>:1:N" is the least */

    job.ts = PyEval_SaveThread();
    rc = hp_run(&job);
    PyEval_RestoreThread(job.ts);
    PyBuffer_Release(&view);
    free(set.ptr);
    free(set.len);

    if (rc == HP_NOMEM) {
        hp_free(&job);
        if (job.overflow) {
            PyErr_SetString(PyExc_RuntimeError, "hash column bound exceeded");
            return NULL;
        }
        return PyErr_NoMemory();
    }
    if (rc == HP_UNUSUAL) {
        hp_free(&job);
        return PyLong_FromSize_t(job.bad_at);
    }
    out = PyList_New(0);
    if (!out)
        goto fail;
    for (k = 0; k < job.norder; k++) {
        hp_cols *c = &job.cols[job.order[k]];
        PyObject *item = Py_BuildValue("(IN N N N)", hp_width_bytes[job.order[k]],
                                       hp_bytes(&c->digests), hp_bytes(&c->sizes),
                                       hp_bytes(&c->names), hp_bytes(&c->ends));
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    hp_free(&job);
    return Py_BuildValue("(nN)", (Py_ssize_t)job.lines, out);
fail:
    Py_XDECREF(out);
    hp_free(&job);
    return NULL;
}

/* ------------------------------------------------------------------ sorting digests */

/* Rows of ``w`` bytes and their row numbers, sorted in lockstep. */
typedef struct {
    uint8_t *rows;
    int64_t *order;
    size_t w;
    uint8_t *row;   /* one row of scratch space */
    uint8_t *rtmp;  /* scratch for the largest bucket's rows ... */
    int64_t *otmp;  /* ... and row numbers */
    int64_t *perm;  /* ... and its permutation */
    int64_t *ptmp;
} hp_sorter;

/* Position a before position b of the same bucket (positions keep load order). */
static inline int hp_before(const hp_sorter *s, const uint8_t *base, int64_t a, int64_t b)
{
    int c = memcmp(base + (size_t)a * s->w, base + (size_t)b * s->w, s->w);
    return c < 0 || (c == 0 && a < b);
}

/* A stable insertion sort of the k rows at ``lo`` (for small buckets); ``w`` is s->w, a
 * constant where the compiler can inline the copies and compares. */
static inline __attribute__((always_inline)) void hp_insertion(hp_sorter *s, size_t lo, size_t k,
                                                                const size_t w)
{
    uint8_t *base = s->rows + lo * w;
    int64_t *ord = s->order + lo;
    size_t i, j;

    for (i = 1; i < k; i++) {
        if (memcmp(base + (i - 1) * w, base + i * w, w) <= 0)
            continue;
        memcpy(s->row, base + i * w, w);
        int64_t x = ord[i];
        for (j = i; j > 0 && memcmp(s->row, base + (j - 1) * w, w) < 0; j--) {
            memcpy(base + j * w, base + (j - 1) * w, w);
            ord[j] = ord[j - 1];
        }
        memcpy(base + j * w, s->row, w);
        ord[j] = x;
    }
}

/* A stable merge sort of the k rows at ``lo`` (a bucket that many rows share). */
static void hp_merge(hp_sorter *s, size_t lo, size_t k)
{
    uint8_t *base = s->rows + lo * s->w;
    int64_t *ord = s->order + lo, *v = s->perm, *tmp = s->ptmp;
    size_t run, a, i, j, w = s->w;

    for (i = 0; i < k; i++)
        v[i] = (int64_t)i;
    for (a = 0; a < k; a += 8) { /* insertion-sorted runs of 8 */
        size_t n = k - a < 8 ? k - a : 8;
        for (i = a + 1; i < a + n; i++) {
            int64_t x = v[i];
            for (j = i; j > a && hp_before(s, base, x, v[j - 1]); j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
    }
    for (run = 8; run < k; run *= 2) {
        for (a = 0; a + run < k; a += 2 * run) {
            size_t mid = a + run, hi = k - a < 2 * run ? k : a + 2 * run, n = 0;
            i = a;
            j = mid;
            while (i < mid && j < hi)
                tmp[n++] = hp_before(s, base, v[j], v[i]) ? v[j++] : v[i++];
            while (i < mid)
                tmp[n++] = v[i++];
            while (j < hi)
                tmp[n++] = v[j++];
            memcpy(v + a, tmp, n * sizeof(*v));
        }
    }
    for (i = 0; i < k; i++) { /* apply the permutation */
        memcpy(s->rtmp + i * w, base + (size_t)v[i] * w, w);
        s->otmp[i] = ord[v[i]];
    }
    memcpy(base, s->rtmp, k * w);
    memcpy(ord, s->otmp, k * sizeof(*ord));
}

#define HP_SMALL 16
#ifndef HP_MAX_BITS
#define HP_MAX_BITS 22
#endif
#ifndef HP_PER_BUCKET
#define HP_PER_BUCKET 2
#endif

/* The scatter and the small sorts, with the width as a constant when inlined. */
/* The rows to sort: parts of whole rows, back to back. */
typedef struct {
    Py_buffer *views;
    size_t count;
} hp_parts;

static inline __attribute__((always_inline)) void hp_buckets(hp_sorter *s, const hp_parts *parts,
                                                              uint32_t *start, size_t buckets,
                                                              unsigned bits, const size_t w)
{
    size_t i = 0, p, j;

    for (p = 0; p < parts->count; p++) {
        const uint8_t *d = (const uint8_t *)parts->views[p].buf;
        size_t rows = (size_t)parts->views[p].len / w;
        for (j = 0; j < rows; j++, i++) { /* start[k] ends as bucket k's end */
            const uint8_t *r = d + j * w;
            size_t at = start[((uint32_t)r[0] << 16 | (uint32_t)r[1] << 8 | r[2]) >> (24 - bits)]++;
            memcpy(s->rows + at * w, r, w);
            s->order[at] = (int64_t)i;
        }
    }
    for (i = 0; i < buckets; i++) {
        size_t lo = i ? start[i - 1] : 0, k = start[i] - lo;
        if (k > HP_SMALL)
            hp_merge(s, lo, k);
        else if (k > 1)
            hp_insertion(s, lo, k, w);
    }
}

/* Sort the n rows of ``parts`` (width ``w`` >= 3, n < 2^32) stably: the sorted rows into
 * ``out`` and their row numbers into ``order``. A counting sort on the leading bits scatters
 * the rows (the only random accesses), then each bucket, a few rows on average, is sorted
 * in place. */
static int hp_sort(const hp_parts *parts, size_t n, size_t w, int64_t *order, uint8_t *out)
{
    hp_sorter s;
    unsigned bits = 1;
    size_t buckets, i, p, big = 0;
    uint32_t *start;
    int rc = -1;

    memset(&s, 0, sizeof(s));
    s.rows = out;
    s.order = order;
    s.w = w;
    while (bits < HP_MAX_BITS && ((size_t)1 << (bits + HP_PER_BUCKET)) <= n)
        bits++;
    buckets = (size_t)1 << bits;
    start = (uint32_t *)calloc(buckets + 1, sizeof(*start));
    s.row = (uint8_t *)malloc(w);
    if (!start || !s.row)
        goto done;
    for (p = 0; p < parts->count; p++) {
        const uint8_t *d = (const uint8_t *)parts->views[p].buf;
        size_t rows = (size_t)parts->views[p].len / w;
        for (i = 0; i < rows; i++) {
            const uint8_t *r = d + i * w;
            start[(((uint32_t)r[0] << 16 | (uint32_t)r[1] << 8 | r[2]) >> (24 - bits)) + 1]++;
        }
    }
    for (i = 0; i < buckets; i++) {
        if (start[i + 1] > big)
            big = start[i + 1];
        start[i + 1] += start[i];
    }
    if (big > HP_SMALL) {
        s.rtmp = (uint8_t *)malloc(big * w);
        s.otmp = (int64_t *)malloc(big * sizeof(int64_t));
        s.perm = (int64_t *)malloc(big * sizeof(int64_t));
        s.ptmp = (int64_t *)malloc(big * sizeof(int64_t));
        if (!s.rtmp || !s.otmp || !s.perm || !s.ptmp)
            goto done;
    }
    if (w == 16)
        hp_buckets(&s, parts, start, buckets, bits, 16);
    else if (w == 20)
        hp_buckets(&s, parts, start, buckets, bits, 20);
    else if (w == 32)
        hp_buckets(&s, parts, start, buckets, bits, 32);
    else
        hp_buckets(&s, parts, start, buckets, bits, w);
    rc = 0;
done:
    free(start);
    free(s.row);
    free(s.rtmp);
    free(s.otmp);
    free(s.perm);
    free(s.ptmp);
    return rc;
}

static PyObject *sort_digests(PyObject *self, PyObject *args)
{
    PyObject *seq, *fast = NULL, *order = NULL, *out = NULL, *res = NULL;
    Py_ssize_t width, count, k, got = 0;
    hp_parts parts = {NULL, 0};
    size_t n = 0;
    int rc;

    (void)self;
    if (!PyArg_ParseTuple(args, "On", &seq, &width))
        return NULL;
    if (width < 3) {
        PyErr_SetString(PyExc_ValueError, "width must be at least 3");
        return NULL;
    }
    fast = PySequence_Fast(seq, "parts must be a sequence of bytes-like objects");
    if (!fast)
        return NULL;
    count = PySequence_Fast_GET_SIZE(fast);
    parts.views = (Py_buffer *)PyMem_Calloc(count ? (size_t)count : 1, sizeof(Py_buffer));
    if (!parts.views) {
        PyErr_NoMemory();
        goto done;
    }
    for (k = 0; k < count; k++, got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, k), &parts.views[k],
                               PyBUF_SIMPLE) < 0)
            goto done;
        if (parts.views[k].len % width) {
            got++;
            PyErr_SetString(PyExc_ValueError, "a part is not whole rows");
            goto done;
        }
        n += (size_t)(parts.views[k].len / width);
    }
    parts.count = (size_t)count;
    if (n >= UINT32_MAX || n > (size_t)PY_SSIZE_T_MAX / 64 ||
        n > (size_t)PY_SSIZE_T_MAX / (size_t)width) {
        PyErr_SetString(PyExc_ValueError, "too many rows");
        goto done;
    }
    order = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * sizeof(int64_t)));
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * (size_t)width));
    if (!order || !out)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    rc = hp_sort(&parts, n, (size_t)width, (int64_t *)PyBytes_AS_STRING(order),
                 (uint8_t *)PyBytes_AS_STRING(out));
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_NoMemory();
        goto done;
    }
    res = Py_BuildValue("(OO)", order, out);
done:
    for (k = 0; k < got; k++)
        PyBuffer_Release(&parts.views[k]);
    PyMem_Free(parts.views);
    Py_XDECREF(order);
    Py_XDECREF(out);
    Py_XDECREF(fast);
    return res;
}

static PyMethodDef methods[] = {
    {"parse_block", parse_block, METH_VARARGS,
     "parse_block(data, start, end, size_first, star_min_fl, flevel, max_line, max_size, "
     "suffix, ignored) -> (newlines, [(width, digests, sizes, names, ends)...]), or the "
     "offset of the first line outside the canonical form."},
    {"sort_digests", sort_digests, METH_VARARGS,
     "sort_digests(parts, width) -> (order, sorted): the stable sort of the fixed-width rows "
     "of the parts taken back to back (order as int64 row numbers)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef hp_module_def = {
    PyModuleDef_HEAD_INIT, "_hashparse", "Bulk parse of canonical hash database lines.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hashparse(void)
{
    hp_tables();
    return PyModule_Create(&hp_module_def);
}
