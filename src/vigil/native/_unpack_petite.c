/*
 * Petite 2.1/2.2 unpacking over the loaded image, as libclamav's petite_inflate2x_1to9
 * does it: a list of records at the start of the packer's code either moves a block of
 * packed dwords or decompresses one original section (an NRV-like LZ with literals
 * XOR-ed by the remaining length); the petite loader is then cut off the last section,
 * the original entry point is decrypted from the import thunks when the clues are
 * there, and the sections are compacted to the start of the buffer.
 *
 * inflate(image, minrva, sections, base, entry, version) -> ([(rva, vsize, raw, rsize)],
 * entry) | None. ``image`` (writable) holds the file's sections laid out from ``minrva``;
 * ``sections`` are the file's (rva, vsize) pairs the records are matched against. Every
 * access is checked against the image; each step consumes input or stops.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "_common.h"

#define MAX_SECTIONS 96

typedef struct {
    uint32_t rva, vsz, raw, rsz;
} sect;

typedef struct {
    uint8_t *buf;
    int64_t size;
    int64_t minrva;
} image;

/* [at, at+len) non-empty and inside the image (offsets from the buffer start) */
static int inside(const image *im, int64_t at, int64_t len)
{
    return vg_inside_signed((uint64_t)im->size, at, (uint64_t)len);
}

static uint32_t rd32(const image *im, int64_t at)
{
    return vg_rd32(im->buf + at);
}

/* Offset in the buffer of an RVA. */
static int64_t at_rva(const image *im, int64_t rva)
{
    return rva - im->minrva;
}

/* aPLib-style tag bits read from the stream position; a tag byte is never the last
 * byte of the image (a negative position fails the same check). */
static int tag_bit(const image *im, int64_t *src, uint8_t *tag)
{
    size_t pos = (size_t)*src;
    int bit = vg_tag_bit(im->buf, (size_t)im->size, &pos, tag);
    *src = (int64_t)pos;
    return bit;
}

#define BIT(var)                                      \
    do {                                              \
        if (((var) = tag_bit(im, &src, &tag)) < 0)    \
            return -1;                                \
    } while (0)

/* Decompresses one section of ``size`` bytes from src to dst; returns the end of the
 * written data (offset), or -1. */
static int64_t section(const image *im, int64_t src, int64_t dst, uint32_t size)
{
    uint32_t check1, check2, backsize, addsize;
    int32_t back = 0, oldback = 0;
    uint8_t tag = 0, goback;
    int b;

    if (size < 0x10000) {
        check1 = 0xFFFFC060u;
        check2 = 0xFFFFFC60u;
        goback = 5;
    } else if (size < 0x40000) {
        check1 = 0xFFFF8180u;
        check2 = 0xFFFFF980u;
        goback = 7;
    } else {
        check1 = 0xFFFF8300u;
        check2 = 0xFFFFFB00u;
        goback = 8;
    }
    if (!inside(im, src, 1) || !inside(im, dst, 1))
        return -1;
    size--;
    im->buf[dst++] = im->buf[src++];
    while (size > 0) {
        BIT(b);
        if (!b) {
            if (!inside(im, src, 1) || !inside(im, dst, 1))
                return -1;
            im->buf[dst++] = (uint8_t)(im->buf[src++] ^ (size & 0xff));
            size--;
            continue;
        }
        addsize = 0;
        back++;
        for (;;) {
            BIT(b);
            if (back >= INT_MAX / 2)
                return -1;
            back = back * 2 + b;
            BIT(b);
            if (!b)
                break;
        }
        back -= 3;
        if (back >= 0) {
            backsize = goback;
            do {
                BIT(b);
                if (back >= INT_MAX / 2)
                    return -1;
                back = back * 2 + b;
                backsize--;
            } while (backsize);
            back = ~back;
            addsize += 1 + (back < (int32_t)check2) + (back < (int32_t)check1);
            oldback = back;
        } else {
            backsize = (uint32_t)(back + 1);
            back = oldback;
        }
        BIT(b);
        backsize = backsize * 2 + (uint32_t)b;
        BIT(b);
        backsize = backsize * 2 + (uint32_t)b;
        if (!backsize) {
            backsize = 1;
            for (;;) {
                BIT(b);
                backsize = backsize * 2 + (uint32_t)b;
                BIT(b);
                if (!b)
                    break;
            }
            backsize += 2;
        }
        backsize += addsize;
        size -= backsize;
        if (!inside(im, dst, backsize) || !inside(im, dst + back, backsize))
            return -1;
        for (; backsize; backsize--, dst++)
            im->buf[dst] = im->buf[dst + back];
        back = 0;
    }
    return dst;
}

static int in_range(uint32_t base, uint32_t size, uint32_t at, uint32_t len)
{
    return size > 0 && len > 0 && len <= size && at >= base &&
           (uint64_t)at + len <= (uint64_t)base + size;
}

/* The whole unpacking; returns the number of sections (>0) or -1. */
static int inflate(const image *im, const uint32_t *srva, const uint32_t *svsz, int count,
                   uint32_t base, uint32_t pep, int version, sect *out, uint32_t *entry)
{
    uint32_t grown = 0x355, skew = 0x35, bottom = 0, irva = 0, enc_ep = 0;
    int j = 0, mangled = 0, check4resources = 0, workdone = 0, t, upd;
    int64_t packed;

    if (version == 1) {
        grown = 0x323;
        skew = 0x34;
    }
    packed = at_rva(im, (int64_t)srva[count - 1] + (version == 1 ? 0x178 : 0x1b8));

    for (;;) {
        uint32_t rec, size;
        if (!inside(im, packed, 4))
            return -1;
        rec = rd32(im, packed);
        if (!rec)
            break;
        size = rec & 0x7fffffffu;
        if (rec != size) { /* move a block of packed dwords to the end of its section */
            int64_t from, to;
            uint32_t bytes = size * 4;
            if (!inside(im, packed + 4, 8))
                return -1;
            bottom = rd32(im, packed + 8);
            if (bottom > UINT32_MAX - 4)
                return -1;
            bottom += 4;
            from = at_rva(im, (int32_t)rd32(im, packed + 4)) - (int64_t)((size - 1) * 4);
            to = at_rva(im, (int32_t)rd32(im, packed + 8)) - (int64_t)((size - 1) * 4);
            if (!inside(im, from, bytes) || !inside(im, to, bytes))
                return -1;
            memmove(im->buf + to, im->buf + from, bytes);
            packed += 0x0c;
        } else { /* one original section */
            uint32_t thisrva;
            int q;
            int64_t end;
            sect *s;
            if (!inside(im, packed + 4, 8))
                return -1;
            size = rd32(im, packed + 4);
            thisrva = rd32(im, packed + 8);
            packed += 0x10;
            if (j >= MAX_SECTIONS)
                return -1;
            s = &out[j];
            s->rva = thisrva;
            s->rsz = size;
            s->vsz = (int32_t)(bottom - thisrva) > 0 ? bottom - thisrva : size;
            s->raw = 0;
            if (!size) { /* a ghost section */
                j++;
                continue;
            }
            for (q = 0; q < count; q++) {
                if (!in_range(srva[q], svsz[q], s->rva, s->vsz))
                    continue;
                if (!check4resources) {
                    s->rva = srva[q];
                    s->rsz = thisrva - srva[q] + size;
                }
                break;
            }
            if (q == count)
                return -1;
            j++;
            end = section(im, at_rva(im, rec), at_rva(im, thisrva), size);
            if (end < 0)
                return -1;
            { /* cut the petite loader off the section just written */
                int strip = 0;
                uint32_t reloc = 0;
                int64_t tail = end - grown;
                if (out[j - 1].rsz > grown && inside(im, tail + 5 + 0x4f, 8) &&
                    rd32(im, tail + 5 + 0x4f) == 0x645ec033u &&
                    rd32(im, tail + 5 + 0x4f + 4) == 0x1b8b188bu) {
                    strip = 1;
                }
                if (!strip && out[j - 1].rsz > grown + skew &&
                    inside(im, tail + 5 + 0x4f - skew, 8) &&
                    rd32(im, tail + 5 + 0x4f - skew) == 0x645ec033u &&
                    rd32(im, tail + 5 + 0x4f + 4 - skew) == 0x1b8b188bu) {
                    reloc = skew;
                    strip = 1;
                }
                if (strip && inside(im, tail + 0x0f - 8 - reloc, 8)) {
                    uint32_t test1 = rd32(im, tail + 0x0f - 8 - reloc) ^ 0x9d6661aau;
                    uint32_t test2 = rd32(im, tail + 0x0f - 4 - reloc) ^ 0xe908c483u;
                    if (test1 == test2 && inside(im, tail + 0x0f - reloc, 0x1c0 - 0x0f + 4)) {
                        irva = rd32(im, tail + 0x121 - reloc);
                        enc_ep = rd32(im, tail + 0x0f - reloc) ^ test1;
                        mangled = rd32(im, tail + 0x1c0 - reloc) != 0x90909090u;
                    }
                    out[j - 1].rsz -= grown + reloc;
                }
            }
            check4resources++;
        }
    }

    if (j <= 0)
        return -1;
    do { /* by RVA, keeping the order of equal ones */
        upd = 0;
        for (t = 0; t < j - 1; t++) {
            if (out[t].rva > out[t + 1].rva) {
                sect tmp = out[t];
                out[t] = out[t + 1];
                out[t + 1] = tmp;
                upd = 1;
            }
        }
    } while (upd);
    for (t = 0; t < j - 1; t++)
        out[t].vsz = out[t + 1].rva - out[t].rva;

    if (enc_ep) { /* decrypt the original entry point with the import thunks */
        uint32_t virtaddr = pep + 5 + base, api, tmp;
        int rndm = 0, dummy = 1;
        int64_t thunk = at_rva(im, irva), imports;
        if (version == 2) {
            while (dummy && inside(im, thunk, 4)) {
                if (!rd32(im, thunk)) {
                    workdone = 1;
                    break;
                }
                imports = at_rva(im, (int32_t)rd32(im, thunk));
                thunk += 4;
                dummy = 0;
                while (inside(im, imports, 4)) {
                    dummy = 0;
                    imports += 4;
                    api = rd32(im, imports - 4);
                    if (!api) {
                        dummy = 1;
                        break;
                    }
                    if (!(api & 0x80000000u) && mangled && --rndm < 0) {
                        api = virtaddr;
                        virtaddr += 5;
                        rndm = (int)(virtaddr & 7);
                    } else {
                        api = 0xbff01337u;
                    }
                    if (srva[count - 1] + base < api)
                        enc_ep--;
                    if (api < virtaddr)
                        enc_ep--;
                    tmp = (enc_ep & 0xfffffff8u) >> 3 & 0x1fffffffu;
                    enc_ep = (enc_ep & 7) << 29 | tmp;
                }
            }
        } else {
            workdone = 1;
        }
        enc_ep = pep + 5 + enc_ep;
        if (workdone != 1)
            enc_ep = out[0].rva;
    }
    *entry = enc_ep;

    for (t = 0; t < j; t++) { /* compact the sections to the start of the buffer */
        out[t].raw = t > 0 ? out[t - 1].raw + out[t - 1].rsz : 0;
        if (!out[t].rsz)
            continue;
        if (inside(im, out[t].raw, out[t].rsz) && inside(im, at_rva(im, out[t].rva), out[t].rsz)) {
            memmove(im->buf + out[t].raw, im->buf + at_rva(im, out[t].rva), out[t].rsz);
        } else {
            out[t].raw = t > 0 ? out[t - 1].raw : 0;
            out[t].rsz = 0;
        }
    }
    return j;
}

static PyObject *py_inflate(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    PyObject *list, *fast = NULL, *result = NULL;
    unsigned long minrva, base, pep;
    int version, count, i, n = -1;
    uint32_t *srva = NULL, *svsz = NULL, entry = 0;
    sect out[MAX_SECTIONS];
    image im;
    (void)self;

    if (!PyArg_ParseTuple(args, "w*kOkki", &buf, &minrva, &list, &base, &pep, &version))
        return NULL;
    fast = PySequence_Fast(list, "sections must be a sequence");
    if (!fast)
        goto done;
    count = (int)PySequence_Fast_GET_SIZE(fast);
    if (count <= 0 || count > 0xffff || (version != 1 && version != 2)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    srva = PyMem_Calloc((size_t)count, sizeof(uint32_t));
    svsz = PyMem_Calloc((size_t)count, sizeof(uint32_t));
    if (!srva || !svsz) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < count; i++) {
        unsigned long rva, vsz;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "kk", &rva, &vsz))
            goto done;
        srva[i] = (uint32_t)rva;
        svsz[i] = (uint32_t)vsz;
    }
    im.buf = (uint8_t *)buf.buf;
    im.size = (int64_t)buf.len;
    im.minrva = (int64_t)(uint32_t)minrva;
    Py_BEGIN_ALLOW_THREADS
    n = inflate(&im, srva, svsz, count, (uint32_t)base, (uint32_t)pep, version, out, &entry);
    Py_END_ALLOW_THREADS
    if (n <= 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    {
        PyObject *items = PyList_New(n);
        if (!items)
            goto done;
        for (i = 0; i < n; i++) {
            PyObject *item = Py_BuildValue("(kkkk)", (unsigned long)out[i].rva,
                                           (unsigned long)out[i].vsz, (unsigned long)out[i].raw,
                                           (unsigned long)out[i].rsz);
            if (!item) {
                Py_DECREF(items);
                goto done;
            }
            PyList_SET_ITEM(items, i, item);
        }
        result = Py_BuildValue("(Nk)", items, (unsigned long)entry);
    }
done:
    PyMem_Free(srva);
    PyMem_Free(svsz);
    Py_XDECREF(fast);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"inflate", py_inflate, METH_VARARGS,
     "inflate(image, minrva, sections, base, entry, version) -> (sections, entry) | None: "
     "Petite 2.x unpacking in place."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_petite, "Petite 2.1/2.2 unpacking.", methods)
