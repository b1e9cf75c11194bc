/*
 * JavaScript normalisation: ClamAV 1.4's js-norm.c as clamscan runs it on the <script>
 * blocks of an HTML page, in C, so that no Python code loops over the tokens of a script.
 *
 * The structure mirrors the Python reference (vigil.engine._jsnorm_py) step for step so
 * that the output stays byte-identical, quirks included: a tokenizer whose state survives
 * the end of each piece it is fed (and the end of the script, into the decoders), a scope
 * tracker that numbers declared names (n000, n001, ...), folding of "a"+"b", and decoders
 * for unescape(), eval("..."), dF("...") and Dean Edwards' packer.
 *
 * Data: tokens are 16 bytes (text as an offset into one growing text arena, or a number);
 * scopes live in an array (a parent is always created before its children); declared names
 * sit in one hash table keyed by scope and name. While the decoders walk the token list,
 * it is a gap buffer with the gap at the walk's position, so that replacing the tokens
 * there, or appending at the end, costs what is inserted, not the length of the list.
 *
 * Bounds: the decoders' output (the only step that can make more text than it reads) and
 * the rendered script are both capped at the limit given to the constructor; past it the
 * decoded text and the output are cut, never the process. The packer search, which looks
 * ahead to the end of the list for each candidate (quadratic on a crafted script, in
 * ClamAV too), stops finding packers after passing over 2^28 plus 64 times the script's
 * tokens (about half a second). Names are resolved offline in one walk over the scope
 * tree, so deep nesting costs no more than its tokens. Allocation failures are sticky and
 * end in MemoryError. The GIL is released while a piece is tokenized and while finish()
 * decodes and renders; a busy flag refuses concurrent use of one object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#include "_common.h"

/* Token kinds (the order of the Python reference's _T). */
enum {
    T_OTHER, T_IDENT, T_UNNORM, T_STRING, T_INT, T_FLOAT, T_FUNCTION, T_VAR, T_DOT,
    T_PAR_OPEN, T_PAR_CLOSE, T_CURLY_OPEN, T_CURLY_CLOSE, T_BRACKET_OPEN, T_BRACKET_CLOSE,
    T_COMMA, T_SEMICOLON, T_PLUS,
};
/* Declaration tracking states of a scope. */
enum { F_BASE, F_IN_VAR, F_IN_INIT, F_WAIT_NAME, F_WAIT_PARAMS, F_IN_DECL };
/* Tokenizer modes that survive the end of a piece. */
enum { M_INITIAL, M_ML_COMMENT, M_SL_COMMENT, M_NUMBER, M_DQ, M_SQ, M_IDENT };

#define TF_OWNED 1 /* a literal or member name (ClamAV's "string" value) */
#define TF_TEXT 2  /* has text (else Python's None) */
#define NO_SCOPE UINT32_MAX
#define ARENA_MAX 0xffff0000u /* text offsets are 32-bit */
#define JS_MAX_LIMIT ((size_t)1 << 31)
/* The packer search passes over the rest of the list for each "function(p,a,c," it meets;
 * over a script it may pass over this many times its tokens (plus a base) in all. */
#define SCAN_FACTOR 64
#define SCAN_BASE ((size_t)1 << 28)

typedef struct {
    union {
        struct {
            uint32_t off, len; /* text: arena[off:off+len] */
        } t;
        double num; /* T_INT (an int32 value) and T_FLOAT */
    } u;
    uint32_t scope; /* T_FUNCTION keyword: the scope it opens; 0 (global) for none */
    uint8_t kind, flags;
} jtok;

typedef struct {
    uint32_t parent;
    uint8_t fsm, last;
    size_t brackets, blocks;
    size_t tab, tcap, tn; /* the scope's names: pool[tab : tab+tcap], tn used (tcap 0: none) */
} jscope;

/* A declared name (a token text) and its number; id JS_FREE marks a free slot. */
typedef struct {
    uint64_t hash;
    uint64_t id;
    uint32_t off, len;
} jent;
#define JS_FREE UINT64_MAX

typedef struct {
    uint8_t *p;
    size_t len, size;
} jbuf;

typedef struct {
    jtok *v;
    size_t n, cap;
} jvec;

/* Tokens [0, flen) and [bstart, bend) of v, in that order; the walk is at index flen. */
typedef struct {
    jtok *v;
    size_t cap, flen, bstart, bend;
} jgap;

typedef struct {
    PyObject_HEAD
    int busy, finished, failed;
    size_t limit;  /* cap on decoded text and on the output */
    size_t budget; /* decoded text still allowed */
    size_t scans;  /* tokens the packer search may still pass over */
    int mode;
    jbuf arena;   /* every token text; starts with the static texts */
    jbuf pending; /* a token cut by the end of a piece */
    jbuf dec;     /* the text a decoder hands back to the tokenizer */
    jvec main, nested;
    jvec *target; /* where the tokenizer puts tokens */
    jgap gap;     /* the main list while the decoders walk it */
    jscope *scopes;
    size_t nscopes, scap;
    uint32_t current;
    uint64_t uniq;
    jent *pool; /* the name tables of all scopes, each a power of two of slots */
    size_t npool, pcap;
} JsNorm;

/* ------------------------------------------------------------------ static texts */

/* Operators in the reference tokenizer's order of preference, then the punctuators; the
 * arena of every normaliser starts with these texts, at the offsets computed at import. */
static const char *const st_text[] = {
    ">>>=", "===", "!==", ">>>", "<<=", ">>=", "<<", "<=", "==", ">=", ">>", "||", "--",
    "!=", "&&", "++", "-=", "*=", "/=", "%=", "+=", "&=", "^=", "|=", "-", "=", "+", "&",
    ":", "/", "!", ">", "<", "*", "|", "%", "?", "~", "^",
    "(", ")", "[", "]", "{", "}", ",", ".", ";",
};
#define ST_COUNT (sizeof(st_text) / sizeof(st_text[0]))
#define ST_OPS 39     /* the first 39 are operators */
#define ST_PLUS 26    /* "+" */
#define ST_SPECIAL 39 /* "(" ... ";" follow */
#define ST_PAR_CLOSE 40
static uint32_t st_off[ST_COUNT], st_len[ST_COUNT], st_total;
static const uint8_t st_kind[9] = {T_PAR_OPEN,     T_PAR_CLOSE,   T_BRACKET_OPEN,
                                   T_BRACKET_CLOSE, T_CURLY_OPEN, T_CURLY_CLOSE,
                                   T_COMMA,        T_DOT,         T_SEMICOLON};

static const char *const keywords[] = {
    "break", "case", "catch", "continue", "default", "delete", "do", "else", "finally",
    "for", "if", "in", "instanceof", "new", "return", "switch", "this", "throw", "try",
    "typeof", "void", "while", "with", "null", "true", "false", "abstract", "boolean",
    "byte", "char", "class", "const", "debugger", "double", "enum", "export", "extends",
    "final", "float", "goto", "implements", "import", "int", "interface", "long", "native",
    "package", "private", "protected", "public", "short", "static", "super", "synchronized",
    "throws", "transient", "volatile",
};
#define KW_COUNT (sizeof(keywords) / sizeof(keywords[0]))
static size_t kw_len[KW_COUNT];

/* Character classes of the tokenizer. */
#define C_SKIP 1
#define C_IDSTART 2
#define C_IDCHAR 4
#define C_DIGIT 8
#define C_OP 16
#define C_SPECIAL 32
#define C_ALNUM 64
#define C_HEX 128
static uint8_t cls[256];
static uint8_t clean[256]; /* lower case, whitespace to a space */

static void init_tables(void)
{
    int c;
    size_t i;
    for (c = 0; c < 256; c++) {
        uint8_t k = 0;
        if (c <= 0x20 || c == '#' || c == '@' || c == '`' || c >= 0x7f)
            k |= C_SKIP;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '$')
            k |= C_IDSTART | C_IDCHAR;
        if (c >= '0' && c <= '9')
            k |= C_DIGIT | C_IDCHAR;
        if (c == '\\')
            k |= C_IDSTART;
        if (c && strchr("-=+&:/!><*|%?~^", c))
            k |= C_OP;
        if (c && strchr("()[]{},.;", c))
            k |= C_SPECIAL;
        if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
            k |= C_ALNUM;
        if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))
            k |= C_HEX;
        cls[c] = k;
        clean[c] = (uint8_t)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        if (c == '\t' || c == '\n' || c == 0x0b || c == 0x0c || c == '\r')
            clean[c] = ' ';
    }
    for (i = 0; i < KW_COUNT; i++)
        kw_len[i] = strlen(keywords[i]);
    st_total = 0;
    for (i = 0; i < ST_COUNT; i++) {
        st_off[i] = st_total;
        st_len[i] = (uint32_t)strlen(st_text[i]);
        st_total += st_len[i];
    }
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* ------------------------------------------------------------------ buffers */

static int jb_reserve(JsNorm *s, jbuf *b, size_t more)
{
    size_t need, size;
    uint8_t *p;
    if (s->failed)
        return -1;
    if (more > SIZE_MAX / 2 - b->len) {
        s->failed = 1;
        return -1;
    }
    need = b->len + more;
    if (need <= b->size)
        return 0;
    size = b->size ? b->size : 256;
    while (size < need)
        size *= 2;
    p = realloc(b->p, size);
    if (!p) {
        s->failed = 1;
        return -1;
    }
    b->p = p;
    b->size = size;
    return 0;
}

static int jb_put(JsNorm *s, jbuf *b, const uint8_t *src, size_t n)
{
    if (!n)
        return 0;
    if (jb_reserve(s, b, n) < 0)
        return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static int jb_put1(JsNorm *s, jbuf *b, uint8_t c)
{
    if (b->len < b->size) {
        b->p[b->len++] = c;
        return 0;
    }
    return jb_put(s, b, &c, 1);
}

/* Copies n bytes into the arena: their offset, or -1. */
static int64_t arena_add(JsNorm *s, const uint8_t *src, size_t n)
{
    size_t off = s->arena.len;
    if (n > ARENA_MAX - off) {
        s->failed = 1;
        return -1;
    }
    if (jb_put(s, &s->arena, src, n) < 0)
        return -1;
    return (int64_t)off;
}

static const uint8_t *tok_text(const JsNorm *s, const jtok *t)
{
    return s->arena.p + t->u.t.off;
}

static int tok_has_text(const jtok *t)
{
    return t->kind != T_INT && t->kind != T_FLOAT && (t->flags & TF_TEXT);
}

static int vec_push(JsNorm *s, jvec *v, const jtok *t)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        jtok *p;
        if (cap > SIZE_MAX / sizeof(jtok)) {
            s->failed = 1;
            return -1;
        }
        p = realloc(v->v, cap * sizeof(jtok));
        if (!p) {
            s->failed = 1;
            return -1;
        }
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = *t;
    return 0;
}

/* ------------------------------------------------------------------ gap buffer */

static size_t g_len(const jgap *g)
{
    return g->flen + (g->bend - g->bstart);
}

static jtok *g_at(jgap *g, size_t j)
{
    return j < g->flen ? &g->v[j] : &g->v[g->bstart + (j - g->flen)];
}

/* At least gap_need free slots at the walk position and tail_need after the end. */
static int g_room(JsNorm *s, jgap *g, size_t gap_need, size_t tail_need)
{
    size_t blen = g->bend - g->bstart, total = g->flen + blen, extra, cap, gap;
    jtok *v;
    if (g->bstart - g->flen >= gap_need && g->cap - g->bend >= tail_need)
        return 0;
    if (s->failed)
        return -1;
    extra = total < 1024 ? 1024 : total;
    if (gap_need > SIZE_MAX / 64 || tail_need > SIZE_MAX / 64 || extra > SIZE_MAX / 64) {
        s->failed = 1;
        return -1;
    }
    extra += gap_need + tail_need;
    cap = total + extra;
    if (cap > SIZE_MAX / sizeof(jtok)) {
        s->failed = 1;
        return -1;
    }
    v = malloc(cap * sizeof(jtok));
    if (!v) {
        s->failed = 1;
        return -1;
    }
    gap = gap_need + (extra - gap_need - tail_need) / 2;
    if (g->flen)
        memcpy(v, g->v, g->flen * sizeof(jtok));
    if (blen)
        memcpy(v + g->flen + gap, g->v + g->bstart, blen * sizeof(jtok));
    free(g->v);
    g->v = v;
    g->cap = cap;
    g->bstart = g->flen + gap;
    g->bend = g->bstart + blen;
    return 0;
}

/* Tokens [begin, end) (begin at or after the walk position) replaced by seq[0:k]. */
static int g_splice(JsNorm *s, jgap *g, size_t begin, size_t end, const jtok *seq, size_t k)
{
    size_t a = begin - g->flen, removed = end - begin, nb;
    if (k > removed && g_room(s, g, k - removed, 0) < 0)
        return -1;
    nb = g->bstart + removed - k;
    if (a)
        memmove(g->v + nb, g->v + g->bstart, a * sizeof(jtok));
    g->bstart = nb;
    if (k)
        memcpy(g->v + nb + a, seq, k * sizeof(jtok));
    return 0;
}

static int g_append(JsNorm *s, jgap *g, const jtok *seq, size_t k)
{
    if (!k)
        return 0;
    if (g_room(s, g, 0, k) < 0)
        return -1;
    memcpy(g->v + g->bend, seq, k * sizeof(jtok));
    g->bend += k;
    return 0;
}

/* Moves the walk position forward to index ``to`` (at most the end). */
static void g_advance(jgap *g, size_t to)
{
    size_t k;
    if (to <= g->flen)
        return;
    k = to - g->flen;
    if (k > g->bend - g->bstart)
        k = g->bend - g->bstart;
    if (k) {
        memmove(g->v + g->flen, g->v + g->bstart, k * sizeof(jtok));
        g->flen += k;
        g->bstart += k;
    }
}

/* ------------------------------------------------------------------ scopes and names */

/* A random key chosen at import, so that names colliding in a table cannot be prepared
 * in advance (the tables probe linearly). */
static uint64_t hash_key;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = hash_key ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull), w;
    while (n >= 8) {
        memcpy(&w, p, 8);
        h = mix64(h ^ w) + hash_key;
        p += 8;
        n -= 8;
    }
    w = 0;
    if (n)
        memcpy(&w, p, n);
    return mix64(h ^ w);
}

static int64_t new_scope(JsNorm *s, uint32_t parent)
{
    jscope *sc;
    if (s->nscopes >= 0xfffffff0u) {
        s->failed = 1;
        return -1;
    }
    if (s->nscopes == s->scap) {
        size_t cap = s->scap ? s->scap * 2 : 64;
        jscope *p = realloc(s->scopes, cap * sizeof(jscope));
        if (!p) {
            s->failed = 1;
            return -1;
        }
        s->scopes = p;
        s->scap = cap;
    }
    sc = &s->scopes[s->nscopes];
    memset(sc, 0, sizeof(*sc));
    sc->parent = parent;
    sc->fsm = F_BASE;
    sc->last = T_OTHER;
    return (int64_t)s->nscopes++;
}

/* The slot of name in a scope's table: its entry, or the free slot where it would go. */
static jent *tab_find(JsNorm *s, const jscope *sc, uint64_t h, const uint8_t *name, uint32_t len)
{
    jent *tab = s->pool + sc->tab;
    size_t mask = sc->tcap - 1, i = (size_t)h & mask;
    for (;;) {
        jent *e = &tab[i];
        if (e->id == JS_FREE)
            return e;
        if (e->hash == h && e->len == len && !memcmp(s->arena.p + e->off, name, len))
            return e;
        i = (i + 1) & mask;
    }
}

/* Moves a scope's table to a new region of the pool twice as large (the old one is left
 * unused: at most as much again as the tables in use). */
static int tab_grow(JsNorm *s, uint32_t scope)
{
    jscope *sc = &s->scopes[scope];
    size_t cap = sc->tcap ? sc->tcap * 2 : 4, i, start;
    jent *old;
    if (cap > (SIZE_MAX / sizeof(jent)) / 4 - s->npool) {
        s->failed = 1;
        return -1;
    }
    if (s->npool + cap > s->pcap) {
        size_t pcap = s->pcap ? s->pcap : 4096;
        jent *p;
        while (pcap < s->npool + cap)
            pcap *= 2;
        p = realloc(s->pool, pcap * sizeof(jent));
        if (!p) {
            s->failed = 1;
            return -1;
        }
        s->pool = p;
        s->pcap = pcap;
    }
    start = s->npool;
    s->npool += cap;
    for (i = 0; i < cap; i++)
        s->pool[start + i].id = JS_FREE;
    old = s->pool + sc->tab;
    for (i = 0; i < sc->tcap; i++) {
        if (old[i].id != JS_FREE) {
            size_t j = (size_t)old[i].hash & (cap - 1);
            while (s->pool[start + j].id != JS_FREE)
                j = (j + 1) & (cap - 1);
            s->pool[start + j] = old[i];
        }
    }
    sc->tab = start;
    sc->tcap = cap;
    return 0;
}

/* Records name (a token text) as declared in scope with the next number. */
static int declare(JsNorm *s, uint32_t scope, uint32_t off, uint32_t len)
{
    jscope *sc = &s->scopes[scope];
    uint64_t h = hash_bytes(s->arena.p + off, len);
    jent *e;
    if ((sc->tn + 1) * 2 > sc->tcap) {
        if (tab_grow(s, scope) < 0)
            return -1;
    }
    e = tab_find(s, sc, h, s->arena.p + off, len);
    if (e->id == JS_FREE) {
        e->hash = h;
        e->off = off;
        e->len = len;
        sc->tn++;
    }
    e->id = s->uniq++;
    return 0;
}

/* ------------------------------------------------------------------ tokens in */

/* Declarations and scopes for one token, then the token stored (cli_js_process_buffer). */
static void take(JsNorm *s, jtok t)
{
    jscope *cur = &s->scopes[s->current];
    jvec *out = s->target;
    uint8_t lexed = t.kind;
    int64_t sc;

    if (s->failed)
        return;
    switch (t.kind) {
    case T_VAR:
        cur->fsm = F_IN_VAR;
        break;
    case T_IDENT:
        if (cur->last == T_DOT) {
            t.kind = T_UNNORM;
            t.flags |= TF_OWNED;
        } else if (cur->fsm == F_IN_VAR || cur->fsm == F_IN_DECL) {
            if (declare(s, s->current, t.u.t.off, t.u.t.len) < 0)
                return;
            cur->fsm = F_IN_INIT;
            cur->brackets = 0;
        } else if (cur->fsm == F_WAIT_NAME) {
            if (declare(s, s->current, t.u.t.off, t.u.t.len) < 0)
                return;
            cur->fsm = F_WAIT_PARAMS;
        }
        break;
    case T_PAR_OPEN:
        if (cur->fsm == F_WAIT_NAME || cur->fsm == F_WAIT_PARAMS)
            cur->fsm = F_IN_DECL;
        break;
    case T_PAR_CLOSE:
        if (cur->fsm == F_WAIT_PARAMS)
            cur->fsm = F_BASE;
        break;
    case T_CURLY_OPEN:
        if (cur->fsm == F_WAIT_NAME || cur->fsm == F_WAIT_PARAMS || cur->fsm == F_IN_DECL)
            cur->fsm = F_BASE;
        cur->blocks++;
        break;
    case T_CURLY_CLOSE:
        if (cur->blocks > 0)
            cur->blocks--;
        if (!cur->blocks && cur->parent != NO_SCOPE) {
            jtok marker;
            if (vec_push(s, out, &t) < 0)
                return;
            memset(&marker, 0, sizeof(marker));
            marker.kind = T_FUNCTION; /* no text, no scope: the end of a function */
            t = marker;
            s->current = cur->parent;
            cur = &s->scopes[s->current];
        }
        break;
    case T_BRACKET_OPEN:
        cur->brackets++;
        break;
    case T_BRACKET_CLOSE:
        if (cur->brackets > 0)
            cur->brackets--;
        break;
    case T_COMMA:
        if (cur->fsm == F_IN_INIT && !cur->brackets && !cur->blocks)
            cur->fsm = F_IN_VAR;
        break;
    case T_SEMICOLON:
        if (!cur->brackets && !cur->blocks)
            cur->fsm = F_BASE;
        break;
    case T_FUNCTION:
        sc = new_scope(s, s->current);
        if (sc < 0)
            return;
        s->current = (uint32_t)sc;
        cur = &s->scopes[sc];
        cur->fsm = F_WAIT_NAME;
        t.scope = (uint32_t)sc;
        break;
    case T_STRING:
        if (out->n > 1 && out->v[out->n - 1].kind == T_PLUS &&
            out->v[out->n - 2].kind == T_STRING) {
            /* "a" + "b": the text joins the previous string, which is the arena's last
             * allocation but one (the new text came right after it) */
            jtok *prev = &out->v[out->n - 2];
            out->n--;
            if (!(prev->flags & TF_TEXT)) {
                prev->flags |= TF_TEXT;
                prev->u.t.off = t.u.t.off;
                prev->u.t.len = t.u.t.len;
            } else if ((size_t)prev->u.t.off + prev->u.t.len == t.u.t.off) {
                prev->u.t.len += t.u.t.len;
            } else {
                size_t plen = prev->u.t.len, tlen = t.u.t.len;
                int64_t off;
                if (plen + tlen > ARENA_MAX || jb_reserve(s, &s->arena, plen + tlen) < 0) {
                    s->failed = 1;
                    return;
                }
                off = arena_add(s, s->arena.p + prev->u.t.off, plen);
                if (off < 0 || arena_add(s, s->arena.p + t.u.t.off, tlen) < 0)
                    return;
                prev->u.t.off = (uint32_t)off;
                prev->u.t.len = (uint32_t)(plen + tlen);
            }
            return;
        }
        break;
    default:
        break;
    }
    if (vec_push(s, out, &t) < 0)
        return;
    cur->last = lexed;
}

static void take_text(JsNorm *s, uint8_t kind, uint8_t flags, const uint8_t *src, size_t n)
{
    jtok t;
    int64_t off = arena_add(s, src, n);
    if (off < 0)
        return;
    memset(&t, 0, sizeof(t));
    t.kind = kind;
    t.flags = (uint8_t)(flags | TF_TEXT);
    t.u.t.off = (uint32_t)off;
    t.u.t.len = (uint32_t)n;
    take(s, t);
}

static void take_static(JsNorm *s, uint8_t kind, size_t idx)
{
    jtok t;
    memset(&t, 0, sizeof(t));
    t.kind = kind;
    t.flags = TF_TEXT;
    t.u.t.off = st_off[idx];
    t.u.t.len = st_len[idx];
    take(s, t);
}

static void take_num(JsNorm *s, uint8_t kind, double num)
{
    jtok t;
    memset(&t, 0, sizeof(t));
    t.kind = kind;
    t.u.num = num;
    take(s, t);
}

/* ------------------------------------------------------------------ text decoders */

/* One UTF-16 unit as UTF-8 (surrogates too); NUL becomes 0x01, as ClamAV never emits NUL. */
static void put_utf8(JsNorm *s, jbuf *b, uint32_t u)
{
    uint8_t t[3];
    u &= 0xffff;
    if (u == 0) {
        jb_put1(s, b, 1);
    } else if (u < 0x80) {
        jb_put1(s, b, (uint8_t)u);
    } else if (u < 0x800) {
        t[0] = (uint8_t)(0xc0 | (u >> 6));
        t[1] = (uint8_t)(0x80 | (u & 0x3f));
        jb_put(s, b, t, 2);
    } else {
        t[0] = (uint8_t)(0xe0 | (u >> 12));
        t[1] = (uint8_t)(0x80 | ((u >> 6) & 0x3f));
        t[2] = (uint8_t)(0x80 | (u & 0x3f));
        jb_put(s, b, t, 3);
    }
}

static void put_byte_nz(JsNorm *s, jbuf *b, uint8_t c)
{
    jb_put1(s, b, c ? c : 1);
}

/* JS string escapes as str.c's cli_textbuffer_append_normalize decodes them; NUL -> 0x01. */
static void unescape_literal(JsNorm *s, jbuf *b, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && !s->failed) {
        const uint8_t *bs = memchr(p + i, '\\', n - i);
        size_t stop = bs ? (size_t)(bs - p) : n, k;
        if (jb_reserve(s, b, stop - i) < 0)
            return;
        for (k = i; k < stop; k++)
            b->p[b->len++] = p[k] ? p[k] : 1;
        i = stop;
        if (i >= n)
            break;
        /* p[i] is a backslash */
        if (i + 1 >= n) { /* nothing after it: it stays */
            jb_put1(s, b, '\\');
            break;
        }
        {
            uint8_t c = p[i + 1];
            size_t rest = n - (i + 2);
            if (c == 'x') {
                if (rest >= 2) {
                    int hi = hexval(p[i + 2]), lo = hexval(p[i + 3]);
                    put_byte_nz(s, b, (uint8_t)((((hi < 0 ? 0 : hi) << 4) | lo) & 0xff));
                    i += 4;
                } else { /* the backslash stays; 'x' and what follows (at most one) go */
                    jb_put1(s, b, '\\');
                    i = n;
                }
            } else if (c == 'u') {
                if (rest >= 4) {
                    int h0 = hexval(p[i + 2]), h1 = hexval(p[i + 3]), h2 = hexval(p[i + 4]);
                    int h3 = hexval(p[i + 5]);
                    int v = ((h0 < 0 ? 0 : h0) << 12) | ((h1 < 0 ? 0 : h1) << 8) |
                            ((h2 < 0 ? 0 : h2) << 4) | h3;
                    put_utf8(s, b, (uint32_t)v & 0xffff);
                    i += 6;
                } else {
                    jb_put1(s, b, '\\');
                    i += 2;
                }
            } else {
                uint8_t o = c;
                switch (c) {
                case '0': o = 0; break;
                case 'b': o = 8; break;
                case 't': o = 9; break;
                case 'n': o = 10; break;
                case 'v': o = 11; break;
                case 'f': o = 12; break;
                case 'r': o = 13; break;
                default: break;
                }
                put_byte_nz(s, b, o);
                i += 2;
            }
        }
    }
}

/* JavaScript's unescape() as str.c's cli_unescape implements it; NUL -> 0x01. */
static void unescape_percent(JsNorm *s, jbuf *b, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && !s->failed) {
        uint8_t c = p[i];
        if (c == '%') {
            if (i + 5 < n && p[i + 1] == 'u' && (cls[p[i + 2]] & C_HEX) &&
                (cls[p[i + 3]] & C_HEX) && (cls[p[i + 4]] & C_HEX) && (cls[p[i + 5]] & C_HEX)) {
                uint32_t v = (uint32_t)(hexval(p[i + 2]) << 12 | hexval(p[i + 3]) << 8 |
                                        hexval(p[i + 4]) << 4 | hexval(p[i + 5]));
                put_utf8(s, b, v);
                i += 6;
                continue;
            }
            if (i + 2 < n && (cls[p[i + 1]] & C_HEX) && (cls[p[i + 2]] & C_HEX)) {
                put_byte_nz(s, b, (uint8_t)(hexval(p[i + 1]) << 4 | hexval(p[i + 2])));
                i += 3;
                continue;
            }
        }
        put_byte_nz(s, b, c);
        i++;
    }
}

/* ------------------------------------------------------------------ tokenizer */

static int is_keyword(const uint8_t *p, size_t n, uint8_t *kind)
{
    size_t i;
    if (n < 2 || n > 12 || p[0] < 'a' || p[0] > 'w')
        return 0;
    if (n == 3 && !memcmp(p, "var", 3)) {
        *kind = T_VAR;
        return 1;
    }
    if (n == 8 && !memcmp(p, "function", 8)) {
        *kind = T_FUNCTION;
        return 1;
    }
    for (i = 0; i < KW_COUNT; i++) {
        if (kw_len[i] == n && (uint8_t)keywords[i][0] == p[0] && !memcmp(keywords[i], p, n)) {
            *kind = T_OTHER;
            return 1;
        }
    }
    return 0;
}

/* The string body from pos; a string cut by the end of the piece continues in the next. */
static size_t lex_string(JsNorm *s, const uint8_t *buf, size_t n, size_t pos)
{
    uint8_t q = s->mode == M_DQ ? '"' : '\'';
    const uint8_t *e = pos < n ? memchr(buf + pos, q, n - pos) : NULL;
    size_t end;
    while (e && (size_t)(e - buf) > pos && e[-1] == '\\') {
        size_t from = (size_t)(e - buf) + 1;
        e = from < n ? memchr(buf + from, q, n - from) : NULL;
    }
    if (!e) {
        unescape_literal(s, &s->pending, buf + pos, n - pos);
        return n;
    }
    end = (size_t)(e - buf);
    unescape_literal(s, &s->pending, buf + pos, end - pos);
    s->mode = M_INITIAL;
    take_text(s, T_STRING, TF_OWNED, s->pending.p, s->pending.len);
    s->pending.len = 0;
    return end + 1;
}

static size_t lex_ident(JsNorm *s, const uint8_t *buf, size_t n, size_t pos)
{
    size_t p = pos, run = pos, end;
    uint8_t kind = T_IDENT;
    for (;;) {
        while (p < n && (cls[buf[p]] & C_IDCHAR))
            p++;
        if (p + 1 < n && buf[p] == '\\' && buf[p + 1] == 'u') {
            jb_put(s, &s->pending, buf + run, p + 1 - run); /* keeps the backslash */
            p += 2;
            run = p;
            continue;
        }
        break;
    }
    if (p < n && run == pos && !s->pending.len) {
        /* the whole name is in this piece: no copy through pending */
        end = p;
        if (buf[end] == '\\')
            end = end + 2 >= n ? n : end + 1;
        s->mode = M_INITIAL;
        is_keyword(buf + pos, p - pos, &kind);
        take_text(s, kind, 0, buf + pos, p - pos);
        return end;
    }
    jb_put(s, &s->pending, buf + run, p - run);
    if (p >= n)
        return n;
    end = p;
    if (buf[end] == '\\') /* ends the name, dropped (with the next byte if that is last) */
        end = end + 2 >= n ? n : end + 1;
    s->mode = M_INITIAL;
    is_keyword(s->pending.p, s->pending.len, &kind);
    take_text(s, kind, 0, s->pending.p, s->pending.len);
    s->pending.len = 0;
    return end;
}

/* C's atoi: strtol saturating at 64 bits, then cut to a 32-bit int. */
static double js_atoi(const uint8_t *p, size_t n)
{
    size_t i = 0, digits;
    uint64_t v = 0;
    while (i < n && p[i] == '0')
        i++;
    digits = i;
    while (digits < n && (cls[p[digits]] & C_DIGIT))
        digits++;
    if (digits - i > 19) {
        v = 0x7fffffffffffffffull;
    } else {
        for (; i < digits; i++)
            v = v * 10 + (uint64_t)(p[i] - '0');
        if (v > 0x7fffffffffffffffull)
            v = 0x7fffffffffffffffull;
    }
    return (double)(int32_t)(uint32_t)v;
}

/* float() of the longest prefix of digits, '.', digits and an exponent; 0.0 without a
 * digit before the exponent (float() refuses those). strtod reads exactly that syntax. */
static double js_atof(JsNorm *s, const uint8_t *p, size_t n)
{
    size_t i = 0, j, sig = 0;
    char small[64], *z;
    double v;
    while (i < n && (cls[p[i]] & C_DIGIT))
        i++;
    sig = i;
    if (i < n && p[i] == '.')
        i++;
    j = i;
    while (i < n && (cls[p[i]] & C_DIGIT))
        i++;
    sig += i - j;
    if (!sig)
        return 0.0;
    if (i < n && (p[i] | 0x20) == 'e') {
        j = i + 1;
        if (j < n && (p[j] == '+' || p[j] == '-'))
            j++;
        if (j < n && (cls[p[j]] & C_DIGIT)) {
            while (j < n && (cls[p[j]] & C_DIGIT))
                j++;
            i = j;
        }
    }
    z = i < sizeof(small) ? small : malloc(i + 1);
    if (!z) {
        s->failed = 1;
        return 0.0;
    }
    memcpy(z, p, i);
    z[i] = 0;
    v = strtod(z, NULL);
    if (z != small)
        free(z);
    return v;
}

static size_t lex_number(JsNorm *s, const uint8_t *buf, size_t n, size_t pos)
{
    size_t p = pos, end;
    int dot = 0;
    while (p < n && (cls[buf[p]] & C_DIGIT))
        p++;
    if (p < n && buf[p] == '.') {
        dot = 1;
        p++;
        for (;;) {
            if (p < n && (cls[buf[p]] & C_DIGIT)) {
                p++;
            } else if (p + 1 < n && (buf[p] | 0x20) == 'e' &&
                       (buf[p + 1] == '-' || buf[p + 1] == '+' || (cls[buf[p + 1]] & C_DIGIT))) {
                p += 2;
            } else {
                break;
            }
        }
        if (p < n && (buf[p] | 0x20) == 'e')
            p++;
    }
    jb_put(s, &s->pending, buf + pos, p - pos);
    end = p;
    if (end == n) {
        if (p == pos || (buf[p - 1] | 0x20) != 'e')
            return n;
        end--; /* a final lone 'e' is read again as the start of the next token */
    }
    s->mode = M_INITIAL;
    if (dot)
        take_num(s, T_FLOAT, js_atof(s, s->pending.p, s->pending.len));
    else
        take_num(s, T_INT, js_atoi(s->pending.p, s->pending.len));
    s->pending.len = 0;
    return end;
}

static size_t lex_initial(JsNorm *s, const uint8_t *buf, size_t n, size_t pos)
{
    uint8_t c = buf[pos], k = cls[c];
    size_t i;
    if (k & C_SKIP) {
        while (pos < n && (cls[buf[pos]] & C_SKIP))
            pos++;
        return pos;
    }
    if (c == '/' && pos + 1 < n && buf[pos + 1] == '*') {
        s->mode = M_ML_COMMENT;
        return pos + 2;
    }
    if (c == '/' && pos + 1 < n && buf[pos + 1] == '/') {
        size_t e = pos + 2;
        if (e == n) { /* "//" ending a piece: the comment carries on into the next one */
            s->mode = M_SL_COMMENT;
            return n;
        }
        while (e < n && buf[e] != '\n' && buf[e] != ' ')
            e++;
        return e;
    }
    if (k & C_OP) {
        for (i = 0; i < ST_OPS; i++) {
            size_t len = st_len[i];
            if ((uint8_t)st_text[i][0] == c && len <= n - pos &&
                !memcmp(st_text[i], buf + pos, len)) {
                take_static(s, i == ST_PLUS ? T_PLUS : T_OTHER, i);
                return pos + len;
            }
        }
    }
    if (c == '"' || c == '\'') {
        s->mode = c == '"' ? M_DQ : M_SQ;
        return lex_string(s, buf, n, pos + 1);
    }
    if (k & C_DIGIT) {
        s->mode = M_NUMBER;
        return lex_number(s, buf, n, pos);
    }
    if (k & C_IDSTART) {
        s->mode = M_IDENT;
        return lex_ident(s, buf, n, pos);
    }
    for (i = ST_SPECIAL; i < ST_COUNT; i++) {
        if ((uint8_t)st_text[i][0] == c) {
            take_static(s, st_kind[i - ST_SPECIAL], i);
            return pos + 1;
        }
    }
    return pos + 1; /* not reached: the classes cover every byte */
}

/* Tokenizes one piece; a token cut by its end continues with the next piece. */
static void process(JsNorm *s, const uint8_t *buf, size_t n)
{
    size_t pos = 0;
    while (pos < n && !s->failed) {
        switch (s->mode) {
        case M_INITIAL:
            pos = lex_initial(s, buf, n, pos);
            break;
        case M_ML_COMMENT: {
            size_t e = pos;
            for (;;) {
                const uint8_t *star = e < n ? memchr(buf + e, '*', n - e) : NULL;
                if (!star)
                    return;
                e = (size_t)(star - buf) + 1;
                if (e < n && buf[e] == '/')
                    break;
            }
            pos = e + 1;
            s->mode = M_INITIAL;
            break;
        }
        case M_SL_COMMENT:
            while (pos < n && buf[pos] != '\n' && buf[pos] != ' ')
                pos++;
            s->mode = M_INITIAL;
            break;
        case M_IDENT:
            pos = lex_ident(s, buf, n, pos);
            break;
        case M_NUMBER:
            pos = lex_number(s, buf, n, pos);
            break;
        default:
            pos = lex_string(s, buf, n, pos);
            break;
        }
    }
}

/* ------------------------------------------------------------------ decoders */

static int tok_is(const JsNorm *s, const jtok *t, uint8_t kind, const char *text, size_t n)
{
    return t->kind == kind && tok_has_text(t) && t->u.t.len == n &&
           !memcmp(tok_text(s, t), text, n);
}

/* unescape("...") folded into the string it makes (the 4th token is not looked at). */
static void fold_unescape(JsNorm *s)
{
    jvec *v = &s->main;
    size_t r = 0, w = 0;
    while (r < v->n && !s->failed) {
        if (r + 4 <= v->n && tok_is(s, &v->v[r], T_IDENT, "unescape", 8) &&
            v->v[r + 1].kind == T_PAR_OPEN && v->v[r + 2].kind == T_STRING) {
            jtok *str = &v->v[r + 2], t;
            int64_t off;
            s->dec.len = 0;
            if (tok_has_text(str))
                unescape_percent(s, &s->dec, tok_text(s, str), str->u.t.len);
            off = arena_add(s, s->dec.p, s->dec.len);
            if (off < 0)
                return;
            memset(&t, 0, sizeof(t));
            t.kind = T_STRING;
            t.flags = TF_TEXT | TF_OWNED;
            t.u.t.off = (uint32_t)off;
            t.u.t.len = (uint32_t)s->dec.len;
            v->v[w++] = t;
            r += 4;
        } else {
            v->v[w++] = v->v[r++];
        }
    }
    v->n = w;
}

static void enter(JsNorm *s, const jtok *t)
{
    if (t->kind != T_FUNCTION)
        return;
    if (t->scope)
        s->current = t->scope;
    else if (s->scopes[s->current].parent != NO_SCOPE)
        s->current = s->scopes[s->current].parent;
}

/* "(p,a,c," (ClamAV means "(p,a,c,k,e,r)" but stops checking after three names). */
static int packer_params(JsNorm *s, jgap *g, size_t i)
{
    static const char names[3] = {'p', 'a', 'c'};
    size_t k;
    if (g_at(g, i)->kind != T_PAR_OPEN)
        return 0;
    for (k = 0; k < 3; k++) {
        if (!tok_is(s, g_at(g, i + 1 + 2 * k), T_IDENT, &names[k], 1) ||
            g_at(g, i + 2 + 2 * k)->kind != T_COMMA)
            return 0;
    }
    return 1;
}

/* Where six comma-separated arguments starting at k begin; the index after them. */
static size_t collect(jgap *g, size_t k, size_t params[6], size_t *np)
{
    size_t j, n = g_len(g);
    *np = 0;
    for (j = 0; j < 6; j++) {
        uint8_t stop = j != 5 ? T_COMMA : T_PAR_CLOSE;
        if (k >= n)
            break;
        params[(*np)++] = k++;
        while (k < n && g_at(g, k)->kind != stop)
            k++;
        k++;
    }
    return k;
}

static uint32_t packer_index(const uint8_t *w, size_t n, uint32_t base)
{
    uint32_t v = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        uint8_t c = w[i];
        int32_t d = c >= 'a' ? c - 87 : (c >= 'A' ? c - 29 : c - '0');
        v = v * base + (uint32_t)d;
    }
    return v;
}

/* Room for n more bytes of decoded text in dec: how many (fewer at the budget). */
static size_t dec_room(JsNorm *s, size_t n)
{
    if (n > s->budget)
        n = s->budget;
    return n;
}

static void dec_put(JsNorm *s, const uint8_t *p, size_t n)
{
    n = dec_room(s, n);
    if (n && jb_put(s, &s->dec, p, n) == 0)
        s->budget -= n;
}

/* One packed call: the packed text with its words looked up in the table. */
static void unpack_call(JsNorm *s, jgap *g, const size_t params[6])
{
    jtok *t0 = g_at(g, params[0]), *t1 = g_at(g, params[1]), *t3 = g_at(g, params[3]);
    uint32_t base = t1->kind == T_INT ? (uint32_t)(int32_t)t1->u.num : UINT32_MAX;
    const uint8_t *packed, *table;
    size_t plen, tlen, nwords = 1, i, w;
    uint32_t *words;

    if (!tok_has_text(t0) || !(t3->flags & TF_OWNED) || !tok_has_text(t3))
        return;
    packed = tok_text(s, t0);
    plen = t0->u.t.len;
    table = tok_text(s, t3);
    tlen = t3->u.t.len;
    for (i = 0; i < tlen; i++)
        nwords += table[i] == '|';
    words = malloc((nwords + 1) * sizeof(uint32_t));
    if (!words) {
        s->failed = 1;
        return;
    }
    /* word w is table[words[w] : words[w+1]-1] (the separator dropped) */
    words[0] = 0;
    for (i = 0, w = 1; i < tlen; i++)
        if (table[i] == '|')
            words[w++] = (uint32_t)(i + 1);
    words[nwords] = (uint32_t)(tlen + 1);
    t3->u.t.len = words[1] - 1; /* ClamAV splits the table in place */

    i = 0;
    while (i < plen && s->budget && !s->failed) {
        size_t j = i;
        if (cls[packed[i]] & C_ALNUM) {
            uint32_t idx;
            while (j < plen && (cls[packed[j]] & C_ALNUM))
                j++;
            idx = packer_index(packed + i, j - i, base);
            if (idx < nwords && words[idx + 1] - 1 > words[idx])
                dec_put(s, table + words[idx], words[idx + 1] - 1 - words[idx]);
            else
                dec_put(s, packed + i, j - i);
        } else {
            while (j < plen && !(cls[packed[j]] & C_ALNUM))
                j++;
            while (i < j) {
                size_t k = i;
                while (k < j && !(packed[k] == '\\' && k + 1 < plen &&
                                  (packed[k + 1] == '\'' || packed[k + 1] == '"')))
                    k++;
                dec_put(s, packed + i, k - i);
                i = k < j ? k + 1 : k;
            }
        }
        i = j;
    }
    free(words);
}

/* Dean Edwards' packer at the "(p,a,c," of a function: the range to replace, in dec the
 * text to put there. */
static int unpack(JsNorm *s, jgap *g, size_t start, int has_name, uint32_t noff, uint32_t nlen,
                  size_t *begin, size_t *end)
{
    size_t nesting = 1, k = start, cnt = g_len(g), params[6], np, first = SIZE_MAX,
           last = SIZE_MAX;
    while (k < cnt) {
        jtok *t = g_at(g, k);
        if (!s->scans)
            return 0; /* the search's allowance is spent: no more packers in this script */
        s->scans--;
        if (t->kind == T_FUNCTION) {
            if (t->scope)
                nesting++;
            else
                nesting--;
            if (!nesting)
                break;
        }
        k++;
    }
    if (nesting)
        return 0;
    s->dec.len = 0;
    if (has_name) {
        while (k + 2 < cnt && !s->failed) {
            jtok *t = g_at(g, k);
            if (!s->scans)
                return 0;
            s->scans--;
            if (t->kind == T_IDENT && t->u.t.len == nlen &&
                !memcmp(tok_text(s, t), s->arena.p + noff, nlen) &&
                g_at(g, k + 1)->kind == T_PAR_OPEN) {
                k = collect(g, k + 2, params, &np);
                if (np == 6) {
                    if (first == SIZE_MAX)
                        first = params[0];
                    last = params[5];
                    unpack_call(s, g, params);
                }
            }
            k++;
        }
    } else {
        while (k < cnt && g_at(g, k)->kind != T_PAR_OPEN)
            k++;
        k++;
        if (k >= cnt)
            return 0;
        k = collect(g, k, params, &np);
        if (np == 6) {
            first = params[0];
            last = params[5];
            unpack_call(s, g, params);
        }
    }
    if (first == SIZE_MAX || last == SIZE_MAX)
        return 0;
    *end = last + 1;
    if (*end + 2 < cnt && g_at(g, *end)->kind == T_BRACKET_OPEN &&
        g_at(g, *end + 1)->kind == T_BRACKET_CLOSE && g_at(g, *end + 2)->kind == T_PAR_CLOSE)
        *end += 3;
    else if (*end < cnt)
        *end += 1;
    *begin = first;
    return 1;
}

/* scriptasylum's dF(): unescape, shift every byte down, cut at NUL, unescape again. */
static int decode_df(JsNorm *s, jgap *g, size_t start)
{
    jtok *t = g_at(g, start);
    const uint8_t *text;
    size_t n, cut;
    uint8_t shift;
    jbuf step = {NULL, 0, 0};
    if (t->kind != T_STRING || !tok_has_text(t) || !t->u.t.len)
        return 0;
    text = tok_text(s, t);
    n = t->u.t.len - 1;
    shift = (uint8_t)(text[n] - '0');
    t->u.t.len = (uint32_t)n;
    unescape_percent(s, &step, text, n);
    for (cut = 0; cut < step.len; cut++) {
        step.p[cut] = (uint8_t)(step.p[cut] - shift);
        if (!step.p[cut])
            break;
    }
    s->dec.len = 0;
    if (!s->failed)
        unescape_percent(s, &s->dec, step.p, cut);
    free(step.p);
    return !s->failed;
}

static int decode_eval(JsNorm *s, jgap *g, size_t start)
{
    jtok *t = g_at(g, start);
    if (start + 1 >= g_len(g) || !(t->flags & TF_OWNED) || !tok_has_text(t) ||
        g_at(g, start + 1)->kind != T_PAR_CLOSE)
        return 0;
    s->dec.len = 0;
    if (jb_put(s, &s->dec, tok_text(s, t), t->u.t.len) < 0)
        return 0;
    t->flags &= (uint8_t)~TF_TEXT;
    return 1;
}

static int may_decode(const JsNorm *s, const jtok *t)
{
    return t->kind == T_FUNCTION || tok_is(s, t, T_IDENT, "dF", 2) ||
           tok_is(s, t, T_IDENT, "eval", 4);
}

static void run_decoders(JsNorm *s)
{
    jgap *g = &s->gap;
    size_t i = 0;
    while (i < g_len(g) && !s->failed) {
        jtok tok;
        size_t begin = 0, end = 0, len = g_len(g);
        int found = 0, append = 0;
        g_advance(g, i);
        if (g->flen == i) {
            /* tokens no decoder starts at and that enter no scope: passed in one move */
            size_t k = g->bstart;
            while (k < g->bend && !may_decode(s, &g->v[k]))
                k++;
            if (k > g->bstart) {
                i += k - g->bstart;
                g_advance(g, i);
                continue;
            }
        }
        tok = *g_at(g, i);
        if (tok.kind == T_FUNCTION && i + 13 < len) {
            int has_name = 0;
            uint32_t noff = 0, nlen = 0;
            jtok *t;
            i++;
            t = g_at(g, i);
            if (t->kind == T_IDENT) {
                has_name = 1;
                noff = t->u.t.off;
                nlen = t->u.t.len;
                i++;
            }
            if (packer_params(s, g, i))
                found = unpack(s, g, i, has_name, noff, nlen, &begin, &end);
        } else if (i + 2 < len && tok.kind == T_IDENT && g_at(g, i + 1)->kind == T_PAR_OPEN) {
            if (tok_is(s, &tok, T_IDENT, "dF", 2)) {
                found = decode_df(s, g, i + 2);
                begin = i;
                end = i + 4;
                append = 1;
            } else if (tok_is(s, &tok, T_IDENT, "eval", 4)) {
                found = decode_eval(s, g, i + 2);
                begin = i;
                end = i + 4;
            }
        }
        if (found && !s->failed) {
            len = g_len(g);
            if (end < len && g_at(g, end)->kind == T_SEMICOLON)
                end++;
            s->nested.n = 0;
            s->target = &s->nested;
            process(s, s->dec.p, s->dec.len);
            s->target = &s->main;
            if (s->failed)
                return;
            if (begin < len && end <= len) {
                if (append)
                    g_splice(s, g, begin, end, NULL, 0);
                else
                    g_splice(s, g, begin, end, s->nested.v, s->nested.n);
            }
            if (append)
                g_append(s, g, s->nested.v, s->nested.n);
        }
        if (i < g_len(g))
            enter(s, g_at(g, i));
        i++;
    }
}

/* ------------------------------------------------------------------ output */

static int is_alnum(int c)
{
    return c >= 0 && c < 256 && (cls[c] & C_ALNUM);
}

static void put_clean(vg_out *o, const uint8_t *p, size_t n)
{
    size_t k = vg_out_reserve(o, n), i;
    for (i = 0; i < k; i++)
        o->buf[o->len + i] = clean[p[i]];
    o->len += k;
}

/*
 * Name resolution, offline. Each name in the output stands for the number declared for it
 * in the nearest scope, from the one the renderer is in up to the global one. Walking that
 * chain per name costs the nesting depth each time (quadratic on a deeply nested script),
 * so the renderer first records, for every name token, the scope it is read in (in the
 * token's scope field, unused for names); then one depth-first walk over the scope tree
 * keeps, per distinct declared name, a stack of the numbers declared on the path from the
 * global scope, and answers the names read in each scope from the tops of those stacks.
 */
typedef struct {
    uint64_t hash;
    uint32_t off, len;
    uint32_t nid; /* UINT32_MAX: free slot */
} jname;

static jname *intern_find(JsNorm *s, jname *tab, size_t mask, uint64_t h, const uint8_t *name,
                          uint32_t len)
{
    size_t i = (size_t)h & mask;
    for (;;) {
        jname *e = &tab[i];
        if (e->nid == UINT32_MAX ||
            (e->hash == h && e->len == len && !memcmp(s->arena.p + e->off, name, len)))
            return e;
        i = (i + 1) & mask;
    }
}

/* ans[q]: the number the q-th name token (in token order) stands for, or -1. */
static int64_t *resolve(JsNorm *s, size_t nq)
{
    jgap *g = &s->gap;
    size_t ns = s->nscopes, n = g_len(g), j, q, ncap = 16, nnames = 0, mask, sp = 0;
    size_t *qstart = NULL, *qlist = NULL, *qtok = NULL, *prev = NULL, *top = NULL, *stack = NULL;
    uint32_t *first = NULL, *next = NULL, *pool_nid = NULL;
    int64_t *ans = NULL;
    jname *names = NULL;
    int ok = 0;
    const size_t NONE = SIZE_MAX;

    while (ncap < 2 * (s->npool + 1))
        ncap *= 2;
    mask = ncap - 1;
    qstart = calloc(ns + 1, sizeof(size_t));
    qlist = malloc((nq ? nq : 1) * sizeof(size_t));
    qtok = malloc((nq ? nq : 1) * sizeof(size_t));
    ans = malloc((nq ? nq : 1) * sizeof(int64_t));
    first = malloc(ns * sizeof(uint32_t));
    next = malloc(ns * sizeof(uint32_t));
    names = malloc(ncap * sizeof(jname));
    pool_nid = malloc((s->npool ? s->npool : 1) * sizeof(uint32_t));
    prev = malloc((s->npool ? s->npool : 1) * sizeof(size_t));
    stack = malloc(2 * ns * sizeof(size_t));
    if (!qstart || !qlist || !qtok || !ans || !first || !next || !names || !pool_nid || !prev ||
        !stack)
        goto done;

    /* the name tokens grouped by the scope they are read in (token order kept) */
    for (j = 0; j < n; j++) {
        const jtok *t = g_at(g, j);
        if (t->kind == T_IDENT && tok_has_text(t))
            qstart[t->scope + 1]++;
    }
    for (j = 0; j < ns; j++)
        qstart[j + 1] += qstart[j];
    for (j = 0, q = 0; j < n; j++) {
        const jtok *t = g_at(g, j);
        if (t->kind == T_IDENT && tok_has_text(t)) {
            ans[q] = -1;
            qtok[q] = j;
            qlist[qstart[t->scope]++] = q++;
        }
    }
    /* qstart[k] is now where scope k's group ends; it starts where k-1's ends */

    /* every declared name gets a dense number */
    for (j = 0; j < ncap; j++)
        names[j].nid = UINT32_MAX;
    for (j = 0; j < s->npool; j++) {
        jent *e = &s->pool[j];
        pool_nid[j] = UINT32_MAX;
        if (e->id != JS_FREE) {
            jname *nm = intern_find(s, names, mask, e->hash, s->arena.p + e->off, e->len);
            if (nm->nid == UINT32_MAX) {
                nm->hash = e->hash;
                nm->off = e->off;
                nm->len = e->len;
                nm->nid = (uint32_t)nnames++;
            }
            pool_nid[j] = nm->nid;
        }
    }
    top = malloc((nnames ? nnames : 1) * sizeof(size_t));
    if (!top)
        goto done;
    for (j = 0; j < nnames; j++)
        top[j] = NONE;

    /* the scope tree (a parent always comes before its children) */
    for (j = 0; j < ns; j++)
        first[j] = NO_SCOPE;
    for (j = ns; j-- > 1;) {
        uint32_t parent = s->scopes[j].parent;
        next[j] = first[parent];
        first[parent] = (uint32_t)j;
    }

    /* depth first: on the way in push the scope's names and answer its readers, on the
     * way out pop the names */
    stack[sp++] = 0;
    while (sp) {
        size_t item = stack[--sp], k;
        uint32_t sc = (uint32_t)(item >> 1);
        jscope *scope = &s->scopes[sc];
        if (item & 1) {
            for (k = scope->tab; k < scope->tab + scope->tcap; k++)
                if (pool_nid[k] != UINT32_MAX)
                    top[pool_nid[k]] = prev[k];
            continue;
        }
        for (k = scope->tab; k < scope->tab + scope->tcap; k++) {
            if (pool_nid[k] != UINT32_MAX) {
                prev[k] = top[pool_nid[k]];
                top[pool_nid[k]] = k;
            }
        }
        for (k = sc ? qstart[sc - 1] : 0; k < qstart[sc]; k++) {
            const jtok *t = g_at(g, qtok[qlist[k]]);
            const uint8_t *name = tok_text(s, t);
            jname *nm = intern_find(s, names, mask, hash_bytes(name, t->u.t.len), name, t->u.t.len);
            if (nm->nid != UINT32_MAX && top[nm->nid] != NONE)
                ans[qlist[k]] = (int64_t)s->pool[top[nm->nid]].id;
        }
        stack[sp++] = ((size_t)sc << 1) | 1;
        for (k = first[sc]; k != NO_SCOPE; k = next[k])
            stack[sp++] = (size_t)k << 1;
    }
    ok = 1;
done:
    free(qstart);
    free(qlist);
    free(qtok);
    free(first);
    free(next);
    free(names);
    free(pool_nid);
    free(prev);
    free(stack);
    free(top);
    if (!ok) {
        free(ans);
        s->failed = 1;
        return NULL;
    }
    return ans;
}

/* "%d" of a 32-bit int, or "n%03d" of a name's number, without printf. */
static size_t fmt_num(char *buf, int64_t v, int name)
{
    char tmp[24];
    size_t n = 0, o = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (name) {
        buf[o++] = 'n';
        while (n < 3)
            tmp[n++] = '0';
    } else if (v < 0) {
        buf[o++] = '-';
    }
    while (n)
        buf[o++] = tmp[--n];
    return o;
}

static void render(JsNorm *s, vg_out *o)
{
    jgap *g = &s->gap;
    size_t j, n = g_len(g), nq = 0, q = 0;
    int last = 0;
    int64_t *ans;
    /* pass 1: the scope each name is read in */
    s->current = 0;
    for (j = 0; j < n; j++) {
        jtok *t = g_at(g, j);
        if (t->kind == T_FUNCTION) {
            enter(s, t);
        } else if (t->kind == T_IDENT && tok_has_text(t)) {
            t->scope = s->current;
            nq++;
        }
    }
    ans = resolve(s, nq);
    if (!ans)
        return;
    vg_out_write(o, (const uint8_t *)"<script>", 0, 8);
    s->current = 0;
    for (j = 0; j < n && o->len < o->cap && !o->failed; j++) {
        const jtok *t = g_at(g, j);
        uint8_t kind = t->kind;
        char num[64];
        if (kind == T_FUNCTION) {
            enter(s, t);
            if (!t->scope)
                continue;
        }
        if (kind == T_STRING) {
            vg_out_write(o, (const uint8_t *)"\"", 0, 1);
            if (tok_has_text(t))
                put_clean(o, tok_text(s, t), t->u.t.len);
            vg_out_write(o, (const uint8_t *)"\"", 0, 1);
            last = 0x22;
            continue;
        }
        if (kind == T_INT || kind == T_FLOAT || kind == T_IDENT || kind == T_FUNCTION) {
            if (is_alnum(last))
                vg_out_write(o, (const uint8_t *)" ", 0, 1);
            if (kind == T_INT) {
                size_t k = fmt_num(num, (int32_t)t->u.num, 0);
                vg_out_write(o, (const uint8_t *)num, 0, k);
                last = 0x30;
            } else if (kind == T_FLOAT) {
                int k = snprintf(num, sizeof(num), "%g", t->u.num);
                put_clean(o, (const uint8_t *)num, (size_t)k);
                last = 0x30;
            } else if (kind == T_FUNCTION) {
                vg_out_write(o, (const uint8_t *)"function", 0, 8);
                last = 0x61;
            } else {
                if (tok_has_text(t)) {
                    int64_t id = ans[q++];
                    if (id >= 0) {
                        size_t k = fmt_num(num, id, 1);
                        vg_out_write(o, (const uint8_t *)num, 0, k);
                    } else {
                        put_clean(o, tok_text(s, t), t->u.t.len);
                    }
                }
                last = 0x61;
            }
            continue;
        }
        if (!tok_has_text(t)) {
            last = 0;
            continue;
        }
        {
            const uint8_t *text = tok_text(s, t);
            size_t len = t->u.t.len;
            if (len && is_alnum(last) && is_alnum(text[0]))
                vg_out_write(o, (const uint8_t *)" ", 0, 1);
            put_clean(o, text, len);
            last = len ? text[len - 1] : 0;
        }
    }
    free(ans);
}

/* Closes what is open, runs the folders and decoders, and renders the script into o. */
static void finish_all(JsNorm *s, vg_out *o)
{
    size_t balance = 0, j;
    if (s->mode == M_DQ || s->mode == M_SQ) {
        const uint8_t q = s->mode == M_DQ ? '"' : '\'';
        process(s, &q, 1);
    }
    for (j = 0; j < s->main.n; j++) {
        if (s->main.v[j].kind == T_PAR_OPEN)
            balance++;
        else if (s->main.v[j].kind == T_PAR_CLOSE && balance)
            balance--;
    }
    for (j = 0; j < balance && !s->failed; j++) {
        jtok t;
        memset(&t, 0, sizeof(t));
        t.kind = T_PAR_CLOSE;
        t.flags = TF_TEXT;
        t.u.t.off = st_off[ST_PAR_CLOSE];
        t.u.t.len = st_len[ST_PAR_CLOSE];
        vec_push(s, &s->main, &t);
    }
    fold_unescape(s);
    if (s->failed)
        return;
    s->gap.v = s->main.v;
    s->gap.cap = s->main.cap;
    s->gap.flen = s->gap.bstart = 0;
    s->gap.bend = s->main.n;
    s->scans = SCAN_FACTOR * s->main.n + SCAN_BASE;
    s->main.v = NULL;
    s->main.n = s->main.cap = 0;
    run_decoders(s);
    if (s->failed)
        return;
    g_advance(&s->gap, g_len(&s->gap));
    render(s, o);
}

/* ------------------------------------------------------------------ Python type */

static void jn_release(JsNorm *s)
{
    free(s->arena.p);
    free(s->pending.p);
    free(s->dec.p);
    free(s->main.v);
    free(s->nested.v);
    free(s->gap.v);
    free(s->scopes);
    free(s->pool);
    s->arena.p = s->pending.p = s->dec.p = NULL;
    s->main.v = s->nested.v = s->gap.v = NULL;
    s->scopes = NULL;
    s->pool = NULL;
}

static int jn_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    JsNorm *s = (JsNorm *)self;
    Py_ssize_t limit;
    size_t i;
    static char *kwlist[] = {"limit", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:Normaliser", kwlist, &limit))
        return -1;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "Normaliser: negative limit");
        return -1;
    }
    if (s->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Normaliser is in use");
        return -1;
    }
    jn_release(s);
    memset(&s->busy, 0, sizeof(*s) - offsetof(JsNorm, busy));
    s->limit = (size_t)limit < JS_MAX_LIMIT ? (size_t)limit : JS_MAX_LIMIT;
    s->budget = s->limit;
    s->mode = M_INITIAL;
    s->target = &s->main;
    for (i = 0; i < ST_COUNT; i++)
        jb_put(s, &s->arena, (const uint8_t *)st_text[i], st_len[i]);
    if (new_scope(s, NO_SCOPE) < 0 || s->failed) {
        PyErr_NoMemory();
        return -1;
    }
    s->current = 0;
    return 0;
}

static void jn_dealloc(PyObject *self)
{
    jn_release((JsNorm *)self);
    Py_TYPE(self)->tp_free(self);
}

static int jn_enter(JsNorm *s)
{
    if (s->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Normaliser is in use by another thread");
        return -1;
    }
    if (s->finished) {
        PyErr_SetString(PyExc_RuntimeError, "Normaliser has already finished");
        return -1;
    }
    if (!s->scopes) {
        PyErr_SetString(PyExc_RuntimeError, "Normaliser was not initialised");
        return -1;
    }
    if (s->failed) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *jn_feed(PyObject *self, PyObject *arg)
{
    JsNorm *s = (JsNorm *)self;
    Py_buffer piece;
    if (jn_enter(s) < 0)
        return NULL;
    if (PyObject_GetBuffer(arg, &piece, PyBUF_SIMPLE) < 0)
        return NULL;
    s->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    process(s, (const uint8_t *)piece.buf, (size_t)piece.len);
    Py_END_ALLOW_THREADS
    s->busy = 0;
    PyBuffer_Release(&piece);
    if (s->failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *jn_finish(PyObject *self, PyObject *unused)
{
    JsNorm *s = (JsNorm *)self;
    vg_out o;
    PyObject *res;
    (void)unused;
    if (jn_enter(s) < 0)
        return NULL;
    memset(&o, 0, sizeof(o));
    o.cap = s->limit + 8; /* "<script>" comes on top of the limit */
    s->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    finish_all(s, &o);
    Py_END_ALLOW_THREADS
    s->busy = 0;
    s->finished = 1;
    if (s->failed) {
        free(o.buf);
        jn_release(s);
        return PyErr_NoMemory();
    }
    res = vg_out_finish(&o);
    jn_release(s);
    return res;
}

static PyMethodDef jn_methods[] = {
    {"feed", jn_feed, METH_O,
     "feed(piece) -> None\n\nTokenizes one piece of the script; a token cut by the end of "
     "the piece continues in the next one."},
    {"finish", jn_finish, METH_NOARGS,
     "finish() -> bytes\n\nRuns the decoders and returns the normalised script, starting "
     "with <script>; the object is spent afterwards."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject JsNormType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vigil.native._jsnorm.Normaliser",
    .tp_basicsize = sizeof(JsNorm),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Normaliser(limit)\n\nOne script's JavaScript normaliser (ClamAV's js-norm.c). "
              "Decoded text and the output are each cut at limit bytes.",
    .tp_new = PyType_GenericNew,
    .tp_init = jn_init,
    .tp_dealloc = jn_dealloc,
    .tp_methods = jn_methods,
};

static struct PyModuleDef jn_module = {
    PyModuleDef_HEAD_INIT, "_jsnorm", "JavaScript normaliser (see _jsnorm.c).",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jsnorm(void)
{
    PyObject *m;
    init_tables();
    if (getrandom(&hash_key, sizeof(hash_key), GRND_NONBLOCK) != (ssize_t)sizeof(hash_key))
        hash_key = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&hash_key;
    if (PyType_Ready(&JsNormType) < 0)
        return NULL;
    m = PyModule_Create(&jn_module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Normaliser", (PyObject *)&JsNormType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
