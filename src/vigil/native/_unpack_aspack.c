/*
 * ASPack 2.x decompression, in place over the image laid out by RVA (as libclamav's
 * unaspack does it).
 *
 * The stub holds a table of (rva, size) blocks; each block is an LZ77 stream whose
 * literals/lengths, long-length extra bits and distance low bits are coded with canonical
 * Huffman-like tables (4 of them: 721, 28, 8 and 19 symbols) that the stream itself
 * describes, delta-coded against the previous description, and may redescribe at any
 * point (symbol >= 720). Distances come from a 58-entry base table built from bit counts in
 * the stub, with a 3-entry history of recent distances. After the first block, E8/E9 call
 * targets tagged with the stub's marker byte are turned back from rotated absolute values.
 *
 * The decoder state (tables, the bit reservoir, the previous description) persists from
 * one block to the next exactly as libclamav keeps it, so damaged or odd files decode to
 * the same bytes. Every read of the image, of the stub's tables and of the block copy is
 * checked; each step consumes input; the blocks and the total output are capped.
 *
 * decompress(image, ep, version) -> bool: version 1 is 2.12, 2 is 2.12-2.42, 3 is 2.42.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

#define MAX_BLOCKS 0x10000

static const uint32_t helper_sizes[4] = {721, 28, 8, 19};

typedef struct {
    uint32_t bitpos;
    uint32_t hash;
    uint32_t init_array[58];
    uint32_t starts[4][721];
    uint8_t ends[4][0x100];
    const uint8_t *input, *iend;
    uint8_t decrypt_dict[757];
    uint32_t d3[4][24];
    uint32_t d4[4][24];
    int dict_ok;
    uint8_t array2[758];
    uint8_t array1[19];
    /* the stub's tables: image[stuff_at ...], bounds-checked at each read */
    const uint8_t *image;
    uint64_t size;
    uint64_t stuff_at;
} aspk;

/* One byte of the stub's tables, or -1 when it lies outside the image. */
static int stuff(const aspk *s, uint32_t i)
{
    if (s->stuff_at + i >= s->size)
        return -1;
    return s->image[s->stuff_at + i];
}

static int refill(aspk *s)
{
    while (s->bitpos >= 8) {
        if (s->input >= s->iend)
            return 0;
        s->hash = (s->hash << 8) | *s->input++;
        s->bitpos -= 8;
    }
    return 1;
}

/* The 24 bits at the read position. */
static uint32_t window(const aspk *s)
{
    return (s->hash >> (8 - s->bitpos)) & 0xffffff;
}

/* n (0..24, or any byte as x86 shifts it) bits */
static uint32_t take(aspk *s, uint32_t n)
{
    uint32_t v = window(s) >> ((24 - n) & 31);
    s->bitpos += n;
    return v;
}

static uint32_t getdec(aspk *s, int which, int *err)
{
    uint32_t ret, pos, *d3 = s->d3[which], *d4 = s->d4[which];
    *err = 1;
    if (!refill(s))
        return 0;
    ret = window(s) & 0xfffe00;
    if (ret < d3[8]) {
        pos = s->ends[which][ret >> 16];
        if (!pos || pos >= 24)
            return 0;
    } else if (ret < d3[10]) {
        pos = ret < d3[9] ? 9 : 10;
    } else if (ret < d3[11]) {
        pos = 11;
    } else if (ret < d3[12]) {
        pos = 12;
    } else if (ret < d3[13]) {
        pos = 13;
    } else if (ret < d3[14]) {
        pos = 14;
    } else {
        pos = 15;
    }
    s->bitpos += pos;
    ret = ((ret - d3[pos - 1]) >> (24 - pos)) + d4[pos];
    if (ret >= helper_sizes[which])
        return 0;
    *err = 0;
    return s->starts[which][ret];
}

static uint8_t getbits(aspk *s, uint32_t n, int *err)
{
    if (!refill(s)) {
        *err = 1;
        return 0;
    }
    *err = 0;
    return (uint8_t)take(s, n);
}

/* Canonical code tables from code lengths (0..17); 0 on a bad description. */
static int build_table(aspk *s, const uint8_t *lengths, int which)
{
    uint32_t sum = 0, shift = 23, i, endoff = 0, count[18], next[18], size = helper_sizes[which];
    uint32_t *d3 = s->d3[which], *d4 = s->d4[which];

    memset(count, 0, sizeof(count));
    memset(next, 0, sizeof(next));
    for (i = 0; i < size; i++) {
        if (lengths[i] > 17)
            return 0;
        count[lengths[i]]++;
    }
    d3[0] = 0;
    d4[0] = 0;
    for (i = 0; shift >= 9; i++, shift--) {
        sum += count[i + 1] << shift;
        if (sum > 0x1000000)
            return 0;
        d3[i + 1] = sum;
        d4[i + 1] = next[i + 1] = count[i] + d4[i];
        if (shift >= 0x10) {
            uint32_t old = endoff;
            endoff = d3[i + 1] >> 16;
            if (endoff != old) {
                if (endoff < old || endoff > 0x100)
                    return 0;
                memset(s->ends[which] + old, (int)(i + 1), endoff - old);
            }
        }
    }
    if (sum != 0x1000000)
        return 0;
    for (i = 0; i < size; i++) {
        if (lengths[i]) {
            if (next[lengths[i]] >= size)
                return 0;
            s->starts[which][next[lengths[i]]++] = i;
        }
    }
    return 1;
}

static int build_tables(aspk *s)
{
    uint32_t counter, ret;
    int err;

    if (!getbits(s, 1, &err))
        memset(s->decrypt_dict, 0, sizeof(s->decrypt_dict));
    if (err)
        return 0;
    for (counter = 0; counter < 19; counter++) {
        s->array1[counter] = getbits(s, 4, &err);
        if (err)
            return 0;
    }
    if (!build_table(s, s->array1, 3))
        return 0;
    counter = 0;
    while (counter < 757) {
        ret = getdec(s, 3, &err);
        if (err)
            return 0;
        if (ret < 16) {
            s->array2[1 + counter] = (uint8_t)((s->decrypt_dict[counter] + ret) & 0xf);
            counter++;
        } else if (ret == 16) {
            ret = 3 + getbits(s, 2, &err);
            if (err)
                return 0;
            for (; ret && counter < 757; ret--, counter++)
                s->array2[1 + counter] = s->array2[counter];
        } else {
            ret = ret == 17 ? 3 + getbits(s, 3, &err) : 11 + getbits(s, 7, &err);
            if (err)
                return 0;
            for (; ret && counter < 757; ret--, counter++)
                s->array2[1 + counter] = 0;
        }
    }
    if (!build_table(s, &s->array2[1], 0) || !build_table(s, &s->array2[722], 1) ||
        !build_table(s, &s->array2[750], 2))
        return 0;
    s->dict_ok = 0;
    for (counter = 0; counter < 8; counter++) {
        if (s->array2[750 + counter] != 3) {
            s->dict_ok = 1;
            break;
        }
    }
    memcpy(s->decrypt_dict, &s->array2[1], 757);
    return 1;
}

static int decrypt(aspk *s, uint8_t *out, uint32_t size)
{
    uint32_t gen, backsize, backbytes, useold, counter = 0, hist[4] = {0, 0, 0, 0};
    int err, a, b;

    while (counter < size) {
        gen = getdec(s, 0, &err);
        if (err)
            return 0;
        if (gen < 256) {
            out[counter++] = (uint8_t)gen;
            continue;
        }
        if (gen >= 720) {
            if (!build_tables(s))
                return 0;
            continue;
        }
        backbytes = (gen - 256) >> 3;
        backsize = ((gen - 256) & 7) + 2;
        if (backsize == 9) {
            gen = getdec(s, 1, &err);
            if (err || gen >= 0x56)
                return 0;
            if ((a = stuff(s, gen + 0x1c)) < 0 || (b = stuff(s, gen)) < 0 || !refill(s))
                return 0;
            backsize += (uint32_t)b + take(s, (uint32_t)a);
        }
        useold = s->init_array[backbytes];
        if ((a = stuff(s, backbytes + 0x38)) < 0)
            return 0;
        gen = (uint32_t)a;
        if (!s->dict_ok || gen < 3) {
            if (!refill(s))
                return 0;
            useold += take(s, gen);
        } else {
            gen -= 3;
            if (!refill(s))
                return 0;
            useold += take(s, gen) * 8;
            useold += getdec(s, 2, &err);
            if (err)
                return 0;
        }
        if (useold < 3) {
            backbytes = hist[useold];
            if (useold) {
                hist[useold] = hist[0];
                hist[0] = backbytes;
            }
        } else {
            hist[2] = hist[1];
            hist[1] = hist[0];
            hist[0] = backbytes = useold - 3;
        }
        backbytes++;
        if (!backbytes || backbytes > counter || backsize > size - counter)
            return 0;
        while (backsize--) {
            out[counter] = out[counter - backbytes];
            counter++;
        }
    }
    return 1;
}

static const uint32_t blocks_offset[4] = {0, 0x57c, 0x5d8, 0x5e4};
static const uint32_t init_offset[4] = {0, 0x70e, 0x76a, 0x776};
static const uint32_t stuff_offset[4] = {0, 0x6d6, 0x732, 0x73e};
static const uint32_t marker_offset[4] = {0, 0x148, 0x13a, 0x148};

/* 1 when every block was decompressed (the table ended with a zero rva), else 0. */
static int unaspack(aspk *s, uint8_t *image, uint64_t size, uint32_t ep, int version)
{
    uint64_t blocks = (uint64_t)ep + blocks_offset[version], budget = 4 * size + 0x10000;
    uint32_t block_rva = 1, block_size, i = 0, j = 0, k, nblocks = 0;
    uint8_t *copy;

    s->image = image;
    s->size = size;
    s->stuff_at = (uint64_t)ep + stuff_offset[version];
    s->hash = 0x10000;
    for (k = 0; k < 58; k++) {
        uint32_t at = ep + k + init_offset[version];
        s->init_array[k] = j;
        if (at < size)
            j += (uint32_t)1 << (image[at] & 31);
    }
    while (vg_inside(size, blocks, 8) && (block_rva = vg_rd32(image + blocks)) &&
           (block_size = vg_rd32(image + blocks + 4)) && vg_inside(size, block_rva, block_size)) {
        if (++nblocks > MAX_BLOCKS || block_size > budget)
            return 0;
        budget -= block_size;
        copy = calloc((size_t)block_size + 0x10e, 1);
        if (!copy)
            return 0;
        memcpy(copy, image + block_rva, block_size);
        s->input = copy;
        s->iend = copy + (size_t)block_size + 0x10e;
        memset(s->d3, 0, sizeof(s->d3));
        memset(s->d4, 0, sizeof(s->d4));
        memset(s->decrypt_dict, 0, sizeof(s->decrypt_dict));
        s->bitpos = 0x20;
        if (!build_tables(s) || !decrypt(s, image + block_rva, block_size)) {
            free(copy);
            break;
        }
        free(copy);
        if (i == 0 && block_size > 7) { /* the first block's calls */
            uint64_t marker_at = (uint64_t)ep + marker_offset[version];
            if (marker_at >= size)
                return 0;
            while (i < block_size - 6) {
                uint8_t op = image[block_rva + i];
                if (op == 0xe8 || op == 0xe9) {
                    uint8_t *p = image + block_rva + i + 1;
                    if (*p == image[marker_at]) {
                        uint32_t t = vg_rd32(p) & 0xffffff00u;
                        t = (t << 24) | (t >> 8);
                        t -= i;
                        vg_wr32(p, t);
                        i += 4;
                    }
                }
                i++;
            }
        }
        if (version == 1) {
            blocks += 8;
        } else {
            /* entries of size 0xfffffef2 are skipped (an unreadable size counts as not) */
            do {
                blocks += 12;
            } while (vg_inside(size, blocks + 4, 4) && vg_rd32(image + blocks + 4) == 0xfffffef2u);
        }
    }
    return block_rva == 0;
}

static PyObject *py_decompress(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    unsigned long ep;
    int version, ok = 0;
    aspk *s;
    (void)self;

    if (!PyArg_ParseTuple(args, "w*ki", &buf, &ep, &version))
        return NULL;
    s = PyMem_Calloc(1, sizeof(aspk));
    if (!s) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    if (version >= 1 && version <= 3 && ep <= 0xffffffffUL && buf.len > 0) {
        Py_BEGIN_ALLOW_THREADS
        ok = unaspack(s, (uint8_t *)buf.buf, (uint64_t)buf.len, (uint32_t)ep, version);
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(s);
    PyBuffer_Release(&buf);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"decompress", py_decompress, METH_VARARGS,
     "decompress(image, ep, version) -> bool: ASPack 2.x blocks decompressed in place."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_aspack, "ASPack 2.x decompression.", methods)
