/*
 * WWPack32 decompression, in place over the image being rebuilt (as libclamav's
 * wwunpack does it: the packer section holds a list of 17-byte block records; each
 * block's compressed dwords sit at the end of its destination and expand forward).
 *
 * unpack(image, packer, packer_rva) -> int decodes every block into ``image`` (a
 * writable buffer: the file's headers and sections laid out by RVA) and returns 0 on
 * success, 1 on a decoding error. Reads of the packer section, of the compressed data and
 * every write of the image are checked; each step consumes input, so the work is bounded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

typedef struct {
    const uint8_t *data; /* the block's compressed dwords (a private copy) */
    uint64_t size;
    uint64_t pos;
    uint32_t word;
    unsigned count; /* bits left in word */
    int error;
} reader;

static void reseed(reader *r)
{
    if (vg_inside(r->size, r->pos, 4)) {
        r->word = vg_rd32(r->data + r->pos);
        r->pos += 4;
    } else {
        r->error = 1;
    }
    r->count = 32;
}

static uint32_t one_bit(reader *r)
{
    uint32_t value = r->word >> 31;
    r->word <<= 1;
    if (!--r->count)
        reseed(r);
    return value;
}

/* n is 2..15 */
static uint32_t some_bits(reader *r, unsigned n)
{
    uint32_t value = r->word >> (32 - n);
    if (r->count >= n) {
        r->count -= n;
        r->word <<= n;
        if (!r->count)
            reseed(r);
    } else if (vg_inside(r->size, r->pos, 4)) {
        r->word = vg_rd32(r->data + r->pos);
        r->pos += 4;
        r->count += 32 - n;
        value |= r->word >> r->count;
        r->word <<= (32 - r->count);
    } else {
        r->error = 1;
    }
    return value;
}

/* Copies len bytes from back bytes behind *at; 0 or -1. */
static int back_copy(uint8_t *image, uint64_t size, uint64_t *at, uint64_t back, uint64_t len)
{
    uint64_t i;
    if (!vg_inside(size, *at, len) || back > *at || !vg_inside(size, *at - back, len))
        return -1;
    for (i = 0; i < len; i++)
        image[*at + i] = image[*at - back + i];
    *at += len;
    return 0;
}

/* One block: returns 0 at its end marker, 1 on error. */
static int block(uint8_t *image, uint64_t size, uint64_t start, const uint8_t *packed, uint64_t psize)
{
    reader rd = {packed, psize, 0, 0, 0, 0};
    reader *r = &rd;
    uint64_t at = start;

    reseed(r);
    while (!r->error) {
        uint32_t bits, back, len, saved;
        if (!one_bit(r)) { /* literal byte */
            if (r->pos >= r->size || !vg_inside(size, at, 1))
                r->error = 1;
            else
                image[at++] = r->data[r->pos++];
            continue;
        }
        bits = some_bits(r, 2);
        if (bits == 3) { /* two bytes from a short distance */
            uint32_t width, bias = 31;
            bits = some_bits(r, 2);
            width = bits + 5;
            if (bits >= 2) {
                width++;
                bias += 0x80;
            }
            back = (1u << width) - bias;
            bits = some_bits(r, width);
            if (r->error || bits == 0x1ff)
                break; /* end of block (or out of input) */
            back += bits;
            if (back_copy(image, size, &at, back, 2) < 0)
                r->error = 1;
            continue;
        }
        saved = bits;
        bits = some_bits(r, 3);
        if (bits < 6) {
            uint32_t width = bits;
            switch (bits) {
            case 4:
                width++;
                /* fall through */
            case 3:
                width += one_bit(r);
                /* fall through */
            case 0:
            case 1:
            case 2:
                width += 5;
                break;
            default: /* 5 */
                width = 12;
                break;
            }
            bits = some_bits(r, width);
            bits += (1u << width) - 31;
        } else if (bits == 6) {
            bits = some_bits(r, 14) + 0x1fe1;
        } else {
            bits = some_bits(r, 15) + 0x5fe1;
        }
        back = bits;
        if (!saved) {
            if (!one_bit(r)) {
                len = one_bit(r) + 5;
            } else if ((bits = some_bits(r, 3)) != 0) {
                len = bits + 6;
            } else if ((bits = some_bits(r, 4)) != 0) {
                len = bits + 13;
            } else {
                unsigned count = 4;
                uint16_t base = 0x0d;
                do {
                    if (count == 7) {
                        count = 0x0e;
                        base = 0;
                        break;
                    }
                    base = (uint16_t)(((base + 2) << 1) - 1);
                    bits = one_bit(r);
                    count++;
                } while (!bits);
                len = some_bits(r, count) + base;
            }
        } else {
            len = saved + 2;
        }
        if (back_copy(image, size, &at, back, len) < 0)
            r->error = 1;
    }
    return r->error ? 1 : 0;
}

static int unpack(uint8_t *image, uint64_t size, const uint8_t *packer, uint64_t psize, uint32_t rva)
{
    uint64_t rec = 0x2a1;
    for (;;) {
        uint32_t src, words, srcend;
        uint64_t packed_size;
        int64_t start;
        uint8_t *copy;
        int rc;
        if (!vg_inside(psize, rec, 17))
            return 0;
        src = rva - vg_rd32(packer + rec);
        words = vg_rd32(packer + rec + 8);
        srcend = vg_rd32(packer + rec + 12);
        packed_size = (uint32_t)(words * 4);
        /* libclamav adds these to a pointer one by one: no 32-bit wrap */
        start = (int64_t)src + (int64_t)srcend + 4 - (int64_t)packed_size;
        if (!packed_size || start < 0 || !vg_inside(size, (uint64_t)start, packed_size))
            return 0;
        copy = malloc((size_t)packed_size);
        if (!copy)
            return 1;
        memcpy(copy, image + start, (size_t)packed_size);
        memset(image + start, 0xff, (size_t)packed_size);
        rc = block(image, size, start, copy, packed_size);
        free(copy);
        if (rc)
            return 1;
        if (!packer[rec + 16])
            return 0;
        rec += 17;
    }
}

static PyObject *py_unpack(PyObject *self, PyObject *args)
{
    Py_buffer image, packer;
    unsigned long rva;
    int rc;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*y*k", &image, &packer, &rva))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = unpack((uint8_t *)image.buf, (uint64_t)image.len, (const uint8_t *)packer.buf,
                (uint64_t)packer.len, (uint32_t)rva);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&image);
    PyBuffer_Release(&packer);
    if (rc < 0)
        return PyErr_NoMemory();
    return PyLong_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"unpack", py_unpack, METH_VARARGS,
     "unpack(image, packer, packer_rva) -> int: decode WWPack32 blocks into image in "
     "place; 0 on success, 1 on error."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_wwpack, "WWPack32 decompression.", methods)
