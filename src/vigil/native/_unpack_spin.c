/*
 * PESpin 1.1 decryption layers, in place over a copy of the whole file (as libclamav's
 * unspin peels them): the stub's own code is decrypted with a byte key counting down and
 * a 32-bit LFSR; a checksum of the file (a small mixing function over all its bytes)
 * keys a second LFSR that decrypts the flagged sections; a third LFSR uncovers a
 * polymorphic byte decryptor (up to 0x24 bytes of add/sub/xor/rol/ror/inc/dec on AL, with
 * the remaining count in CL) that is first run over another part of the stub, and then a
 * second one over the flagged sections. What is left is aPLib-compressed sections (the
 * caller decompresses them: see pe_unpack.py).
 *
 * Every read and write is checked against the copy of the last section or the file; the
 * byte decryptor is parsed once and then applied, so the work is linear in the file size.
 *
 * decrypt(file, sections, last, entry) -> (compression_bitmap, resources_rva) | None
 *     sections: [(raw, rsz), ...] of the sections before PESpin's; last: (raw, rsz, rva).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

#define MAX_ALLOCATION (1u << 30)

typedef struct {
    uint32_t raw, rsz;
} sect;

static uint32_t ror32(uint32_t v, unsigned n)
{
    n &= 31;
    return (v >> n) | (v << ((32 - n) & 31));
}

/* The polymorphic byte decryptor, parsed once. */
enum { OP_ADD_CL, OP_SUB_CL, OP_XOR_CL, OP_ADD, OP_SUB, OP_XOR, OP_INC, OP_DEC, OP_ROL, OP_ROR };

typedef struct {
    uint8_t kind, imm;
} op;

/* 0 and the ops, or -1 when the code is not one PESpin makes (libclamav's exec86 checks:
 * known opcodes, exactly 0x24 bytes, then stosb). code must have 0x26 readable bytes. */
static int parse(const uint8_t *code, op *ops, int *count)
{
    unsigned len = 0;
    int n = 0;
    while (len < 0x24) {
        uint8_t opcode = code[len++];
        switch (opcode) {
        case 0xeb:
            len += 2;
            break;
        case 0x0a:
            len++;
            break;
        case 0x90:
        case 0xf8:
        case 0xf9:
            break;
        case 0x02:
            ops[n++] = (op){OP_ADD_CL, 0};
            len++;
            break;
        case 0x2a:
            ops[n++] = (op){OP_SUB_CL, 0};
            len++;
            break;
        case 0x32:
            ops[n++] = (op){OP_XOR_CL, 0};
            len++;
            break;
        case 0x04:
            ops[n++] = (op){OP_ADD, code[len++]};
            break;
        case 0x2c:
            ops[n++] = (op){OP_SUB, code[len++]};
            break;
        case 0x34:
            ops[n++] = (op){OP_XOR, code[len++]};
            break;
        case 0xfe:
            ops[n++] = (op){code[len++] == 0xc0 ? OP_INC : OP_DEC, 0};
            break;
        case 0xc0: {
            uint8_t how = code[len++];
            ops[n++] = (op){how == 0xc0 ? OP_ROL : OP_ROR, code[len++]};
            break;
        }
        default:
            return -1;
        }
    }
    if (len != 0x24 || code[len] != 0xaa)
        return -1;
    *count = n;
    return 0;
}

static uint8_t run(const op *ops, int count, uint8_t al, uint8_t cl)
{
    int i;
    for (i = 0; i < count; i++) {
        switch (ops[i].kind) {
        case OP_ADD_CL: al = (uint8_t)(al + cl); break;
        case OP_SUB_CL: al = (uint8_t)(al - cl); break;
        case OP_XOR_CL: al ^= cl; break;
        case OP_ADD: al = (uint8_t)(al + ops[i].imm); break;
        case OP_SUB: al = (uint8_t)(al - ops[i].imm); break;
        case OP_XOR: al ^= ops[i].imm; break;
        case OP_INC: al++; break;
        case OP_DEC: al--; break;
        case OP_ROL: al = vg_rol8(al, ops[i].imm); break;
        default: al = vg_ror8(al, ops[i].imm); break;
        }
    }
    return al;
}

/* Runs the decryptor at buf[code] over [at, at+n), CL counting down from n; -1 on bad
 * code. When the bytes decrypted overlap the decryptor (hostile files only), it is parsed
 * again before each byte, as libclamav re-reads it. */
static int poly(uint8_t *buf, int64_t at, uint32_t n, int64_t code)
{
    op ops[0x24];
    int count;
    int overlap = at < code + 0x26 && code < at + (int64_t)n;
    if (!n)
        return 0;
    if (parse(buf + code, ops, &count) < 0)
        return -1;
    for (; n; n--, at++) {
        if (overlap && parse(buf + code, ops, &count) < 0)
            return -1;
        buf[at] = run(ops, count, buf[at], (uint8_t)n);
    }
    return 0;
}

/* The checksum PESpin keys the section decryption with. */
static uint32_t summit(const uint8_t *p, uint32_t size)
{
    uint32_t eax = 0xffffffffu, ebx = 0xffffffffu, swap;
    int i;
    while (size--) {
        eax ^= ((uint32_t)*p++ << 8) & 0xff00;
        eax = (eax >> 3) & 0x1fffffff;
        for (i = 0; i < 4; i++) {
            eax ^= (ebx >> 8) & 0xff;
            eax += 0x7801a108;
            eax ^= ebx;
            eax = ror32(eax, ebx & 0xff);
            swap = eax;
            eax = ebx;
            ebx = swap;
        }
    }
    return ebx;
}

static int spin(uint8_t *src, uint64_t ssize, const sect *sections, int sectcnt, sect last,
                uint32_t last_rva, uint32_t nep, uint32_t *compression, uint32_t *resources)
{
    uint8_t *sp;
    uint64_t spsize = last.rsz;
    int64_t e, E;
    uint32_t key32, len, bitmap;
    uint8_t key8;
    int j;

    if (!last.rsz || last.rsz > MAX_ALLOCATION || !vg_inside_signed(ssize, last.raw, last.rsz))
        return -1;
    if (!(sp = malloc(last.rsz)))
        return -1;
    memcpy(sp, src + last.raw, last.rsz);
    e = (int64_t)nep - (int64_t)last_rva;
    /* the stub: mov ebx, key8 ... mov ecx, 0x11fe; the next 0x11fe bytes are xored with
     * a key counting down from their end (every offset used below is within e + 0x321b,
     * which the caller's entry-point check keeps inside the section) */
    if (!vg_inside_signed(spsize, e, 0x321b) || sp[e + 0xdb] != 0xbb || sp[e + 0xe0] != 0xb9 ||
        (len = vg_rd32(sp + e + 0xe1)) != 0x11fe)
        goto fail;
    key8 = sp[e + 0xdc];
    {
        int64_t at = e + 0x1fe5 + len - 1;
        while (len--)
            sp[at--] ^= key8--;
    }
    key32 = vg_rd32(sp + e + 0x26eb);
    if ((len = vg_rd32(sp + e + 0x26eb + 5)) != 0x5a0)
        goto fail;
    {
        int64_t at = e + 0x2d5;
        while (len--) {
            key32 = (key32 & 1) ? (key32 >> 1) ^ 0x8c328834u : key32 >> 1;
            sp[at++] ^= (uint8_t)key32;
        }
    }
    len = (uint32_t)ssize - vg_rd32(sp + e + 0x429);
    if (len >= (uint32_t)ssize)
        goto fail;
    key32 = vg_rd32(sp + e + 0x3217) - summit(src, len);
    memcpy(src + last.raw, sp, last.rsz);
    free(sp);

    /* from here on, in the file itself */
    E = (int64_t)nep + last.raw - (int64_t)last_rva;
    if (!vg_inside_signed(ssize, E + 0x3207, 4) || !vg_inside_signed(ssize, E, 0x320b))
        return -1;
    bitmap = vg_rd32(src + E + 0x3207);
    for (j = 0; j < sectcnt; j++, bitmap >>= 1) {
        if (bitmap & 1) {
            uint32_t n = sections[j].rsz, k = key32;
            int64_t at = sections[j].raw;
            if (!vg_inside_signed(ssize, at, n))
                return -1;
            while (n--) {
                k = (k & 1) ? k >> 1 : (k >> 1) ^ 0xed43af31u;
                src[at++] ^= (uint8_t)k;
            }
        }
    }
    if ((len = vg_rd32(src + E + 0x644)) != 0x180)
        return -1;
    key32 = vg_rd32(src + E + 0x644 + 0xc);
    {
        int64_t at = E + 0x28d3;
        while (len--) {
            key32 = (key32 & 1) ? (key32 >> 1) ^ 0xed43af32u : key32 >> 1;
            src[at++] ^= (uint8_t)key32;
        }
    }
    if ((len = vg_rd32(src + E + 0x28dd)) != 0x1a1)
        return -1;
    if (poly(src, E + 0x6d4, len, E + 0x28dd + 0xf) < 0)
        return -1;
    bitmap = vg_rd32(src + E + 0x6f1);
    for (j = 0; j < sectcnt; j++, bitmap >>= 1) {
        if (bitmap & 1) {
            if (!vg_inside_signed(ssize, sections[j].raw, sections[j].rsz) && sections[j].rsz)
                return -1;
            if (poly(src, sections[j].raw, sections[j].rsz, E + 0x755) < 0)
                return -1;
        }
    }
    *compression = vg_rd32(src + E + 0x3061);
    *resources = vg_rd32(src + E + 0x2fee);
    return 0;
fail:
    free(sp);
    return -1;
}

static PyObject *py_decrypt(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    PyObject *list, *fast = NULL, *result = NULL;
    unsigned long lraw, lrsz, lrva, nep;
    uint32_t compression = 0, resources = 0;
    sect *sections = NULL;
    int count = 0, i, rc = -1;
    (void)self;

    if (!PyArg_ParseTuple(args, "w*O(kkk)k", &buf, &list, &lraw, &lrsz, &lrva, &nep))
        return NULL;
    fast = PySequence_Fast(list, "sections must be a sequence");
    if (!fast)
        goto done;
    count = (int)PySequence_Fast_GET_SIZE(fast);
    if (count <= 0 || count > 0xffff || buf.len <= 0 || lraw > 0xffffffffUL ||
        lrsz > 0xffffffffUL || lrva > 0xffffffffUL || nep > 0xffffffffUL) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    sections = PyMem_Calloc((size_t)count, sizeof(sect));
    if (!sections) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < count; i++) {
        unsigned long raw, rsz;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "kk", &raw, &rsz))
            goto done;
        sections[i].raw = (uint32_t)raw;
        sections[i].rsz = (uint32_t)rsz;
    }
    {
        sect last = {(uint32_t)lraw, (uint32_t)lrsz};
        Py_BEGIN_ALLOW_THREADS
        rc = spin((uint8_t *)buf.buf, (uint64_t)buf.len, sections, count, last, (uint32_t)lrva,
                  (uint32_t)nep, &compression, &resources);
        Py_END_ALLOW_THREADS
    }
    if (rc < 0)
        result = Py_NewRef(Py_None);
    else
        result = Py_BuildValue("(kk)", (unsigned long)compression, (unsigned long)resources);
done:
    PyMem_Free(sections);
    Py_XDECREF(fast);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"decrypt", py_decrypt, METH_VARARGS,
     "decrypt(file, sections, last, entry) -> (compression_bitmap, resources_rva) | None: "
     "PESpin 1.1's decryption layers, in place."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_spin, "PESpin 1.1 decryption.", methods)
