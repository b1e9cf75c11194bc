/*
 * yC (yoda's Crypter) section decryption: its decryptors are short polymorphic byte
 * programs (ADD/SUB/XOR with a constant or CL, ROL/ROR, DEC, short jumps) applied to
 * every byte. This interprets them as libclamav's yc_poly_emulator does.
 *
 * emulate(buf, limit, decryptor, code, count, max_count) -> int decrypts
 * buf[code : code + min(count, max_count)] in place with the program at buf[decryptor:]
 * and returns 0 on success, 1 for an opcode outside that set, 2 when a read or write
 * leaves ``limit`` bytes (libclamav's bounds check, which it reports as a heuristic) or
 * the jump budget runs out. Every access is also checked against the buffer itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_common.h"

#define JUMP_BUDGET 100000000u

typedef struct {
    uint8_t *buf;
    uint64_t len;
    uint32_t limit;
} area;

/* libclamav compares the 32-bit truncated distance from the buffer start with the size. */
static int out_of_bounds(const area *a, uint64_t at, uint32_t extra)
{
    uint64_t pos = at + extra;
    return (uint32_t)pos > a->limit || pos >= a->len;
}

static int emulate(area *a, uint64_t decryptor, uint64_t code, uint32_t count, uint32_t max_count)
{
    uint8_t cl = (uint8_t)count, al;
    uint32_t i, j, budget = JUMP_BUDGET;
    const uint8_t *op;

    for (i = 0; i < count && i < max_count; i++) {
        if (out_of_bounds(a, code, i))
            return 2;
        al = a->buf[code + i];
        for (j = 0; j < 0x30; j++) {
            if (out_of_bounds(a, decryptor, j))
                return 2;
            op = a->buf + decryptor;
#define OPERAND()                           \
    do {                                    \
        j++;                                \
        if (out_of_bounds(a, decryptor, j)) \
            return 2;                       \
    } while (0)
            switch (op[j]) {
            case 0xEB: /* jmp short */
                OPERAND();
                if (!budget)
                    return 2;
                budget--;
                j = j + (uint32_t)(int32_t)(int8_t)op[j];
                break;
            case 0xFE: /* dec al */
                al--;
                j++;
                break;
            case 0x2A: /* sub al, cl */
                al = (uint8_t)(al - cl);
                j++;
                break;
            case 0x02: /* add al, cl */
                al = (uint8_t)(al + cl);
                j++;
                break;
            case 0x32: /* xor al, cl */
                al ^= cl;
                j++;
                break;
            case 0x04: /* add al, imm8 */
                OPERAND();
                al = (uint8_t)(al + op[j]);
                break;
            case 0x34: /* xor al, imm8 */
                OPERAND();
                al ^= op[j];
                break;
            case 0x2C: /* sub al, imm8 */
                OPERAND();
                al = (uint8_t)(al - op[j]);
                break;
            case 0xC0: /* rol/ror al, imm8 */
                OPERAND();
                if (op[j] == 0xC0) {
                    OPERAND();
                    al = vg_rol8(al, (int8_t)op[j]);
                } else {
                    OPERAND();
                    al = vg_ror8(al, (int8_t)op[j]);
                }
                break;
            case 0xD2: /* ror/rol al, cl */
                OPERAND();
                if (op[j] == 0xC8)
                    al = vg_ror8(al, cl);
                else
                    al = vg_rol8(al, cl);
                j++;
                break;
            case 0x90:
            case 0xF8:
            case 0xF9:
                break;
            default:
                return 1;
            }
#undef OPERAND
        }
        cl--;
        if (out_of_bounds(a, code, i))
            return 2;
        a->buf[code + i] = al;
    }
    return 0;
}

static PyObject *py_emulate(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    unsigned long limit, count, max_count;
    Py_ssize_t decryptor, code;
    int rc = 2;
    area a;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*knnkk", &buf, &limit, &decryptor, &code, &count, &max_count))
        return NULL;
    a.buf = (uint8_t *)buf.buf;
    a.len = (uint64_t)buf.len;
    a.limit = (uint32_t)limit;
    if (decryptor >= 0 && code >= 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = emulate(&a, (uint64_t)decryptor, (uint64_t)code, (uint32_t)count, (uint32_t)max_count);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    return PyLong_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"emulate", py_emulate, METH_VARARGS,
     "emulate(buf, limit, decryptor, code, count, max_count) -> int: run yC's byte "
     "decryptor over buf[code:] in place; 0 ok, 1 unknown opcode, 2 out of bounds."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_yc, "yC polymorphic decryptor interpreter.", methods)
