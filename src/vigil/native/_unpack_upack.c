/*
 * Upack (0.39 with 2 or 3 sections, 1.1/1.2, and two odd variants) unpacking, in place
 * over the image libclamav's cli_scanpe lays out for it.
 *
 * Upack's decompressor is an LZMA relative with its own layout: 32-bit probabilities kept
 * in the image next to the decoder's state words, a range coder that re-reads four input
 * bytes big-endian at every bit, literal contexts of a variable number of high bits of the
 * previous byte, and E8/E9 call targets turned back from absolute big-endian values. Its
 * parameters (where the tables, the input and the output are, how many context bits) are
 * read from the unpacking stub itself. This file follows libclamav's unupack/unupack399
 * step for step, as the rebuilt image has to be byte for byte the one libclamav scans:
 * including what happens when a bit is read from outside the image (the bit reads as
 * 0xffffffff, which the decoder mostly takes as a 1).
 *
 * Every read and write is checked against the image; positions are kept as signed 64-bit
 * offsets so that libclamav's pointer arithmetic (which may point before the image) is
 * reproduced exactly. Work is bounded: the output never leaves the image, and the coded
 * bits may not outrun the output (a real stream spends at most about 13 bits a byte; a
 * hostile one can make libclamav's bit-tree loops spin without end).
 *
 * unpack(image, upack, ep_bytes, vma, ep, base, va) -> (raw, size, entry) | None
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_common.h"

#define FAIL 0xffffffffu

typedef struct {
    uint8_t *b;
    int64_t size;
    int64_t in;        /* p0: input position */
    uint32_t range;    /* p1 */
    uint32_t low;      /* p2 */
    uint64_t bits;     /* coded bits read */
    uint64_t written;  /* bytes output */
} upk;

static int inside(const upk *u, int64_t at, uint64_t len)
{
    return vg_inside_signed((uint64_t)u->size, at, len);
}

static uint32_t rd32(const upk *u, int64_t at)
{
    return vg_rd32(u->b + at);
}

static void wr32(upk *u, int64_t at, uint32_t v)
{
    vg_wr32(u->b + at, v);
}

static void normalize(upk *u)
{
    if (!(u->range & 0xff000000u)) {
        u->low <<= 8;
        u->range <<= 8;
        u->in++;
    }
}

/* One coded bit with the 32-bit probability at prob: 0, 1, or FAIL (nothing changed). */
static uint32_t bit(upk *u, int64_t prob)
{
    uint32_t bound, p, code;
    if (!inside(u, prob, 4) || !inside(u, u->in, 4) || u->bits > 16 * u->written + 0x10000)
        return FAIL;
    u->bits++;
    bound = (u->range >> 11) * (p = rd32(u, prob));
    code = vg_bswap32(rd32(u, u->in)) - u->low;
    if (code < bound) {
        u->range = bound;
        wr32(u, prob, p + ((0x800 - p) >> 5));
        normalize(u);
        return 0;
    }
    u->low += bound;
    u->range -= bound;
    wr32(u, prob, p - (p >> 5));
    normalize(u);
    return 1;
}

/* libclamav's bit tree: v = 2v + bit(probs + 4v) until v >= limit; v - limit. */
static int tree(upk *u, uint32_t v, uint32_t limit, int64_t probs, uint32_t *out)
{
    uint32_t b;
    do {
        if ((b = bit(u, probs + (int64_t)(uint32_t)(v << 2))) == FAIL)
            return -1;
        v += v + b;
    } while (v < limit);
    *out = v - limit;
    return 0;
}

/* A length: two choice bits pick 8, 8 << 5 (with 3 or 8 bits), as Upack lays them out.
 * *ecx is the caller's ECX (its low byte replaced); returns the length code. */
static int length(upk *u, uint32_t eax, uint32_t *ecx, int64_t probs, uint32_t *out)
{
    uint32_t b, v;
    *ecx = (*ecx & 0xffffff00u) | 8;
    b = bit(u, probs); /* an out-of-image read counts as a 1 here, as in libclamav */
    probs += 4;
    eax = (eax & 0xffffff00u) | 1;
    if (b) {
        b = bit(u, probs);
        eax |= 8;
        if (b) {
            *ecx <<= 5;
            eax = 0x11;
        }
    }
    if (tree(u, 1, *ecx, probs + (int64_t)(uint32_t)(eax << 2), &v) < 0)
        return -1;
    *out = eax + v;
    return 0;
}

/* libclamav's unupack399: decode into [edi, end) with the state words and probabilities
 * at ebx. 0, or -1 on damage. */
static int decode(upk *u, uint32_t eax, int64_t ebx, uint32_t ecx, int64_t edi, int64_t end,
                  uint32_t shift)
{
    uint32_t st[6], ebp = 0, b, i, temp, len_code, save_eax = eax;
    int64_t start = edi, edx, probs;

    for (i = 0; i < 6; i++)
        st[i] = rd32(u, ebx + 4 * (int64_t)i); /* the caller checked these 24 bytes */
    u->range = st[0];
    u->low = st[1];
    do {
        eax = save_eax;
        edx = ebx + (int64_t)(uint32_t)(eax << 2) + 0x58;
        if (bit(u, edx)) {
            /* a match, or a repeated one (state in AL: 8 or 11 from here) */
            eax = (eax & 0xffffff00u) | ((eax & 0xff) >= 7 ? 11u : 8u);
            ebp = st[2];
            ecx = (ecx & 0xffffff00u) | 0x30;
            edx += ecx;
            if (!bit(u, edx)) {
                /* a new distance */
                eax--;
                temp = ebp;
                ebp = st[4];
                st[4] = st[3];
                st[3] = temp;
                save_eax = eax;
                st[5] = ebp;
                if (length(u, eax, &ecx, ebx + 0xbc0, &len_code) < 0)
                    return -1;
                eax = len_code - 1;
                if (eax >= 3)
                    eax = 3;
                eax <<= 6;
                ecx = 0x40;
                if (tree(u, 1, ecx, ebx + (int64_t)(uint32_t)((eax << 2) + 0x378), &eax) < 0)
                    return -1;
                ebp = eax;
                if ((eax & 0xff) >= 4) {
                    uint32_t nbits, rev;
                    ebp = 2 + (eax & 1);
                    nbits = (eax >> 1) - 1;
                    ecx = nbits;
                    ebp <<= (ecx & 0xff) & 31;
                    probs = ebx + (int64_t)(uint32_t)(ebp << 2) + 0x178;
                    if ((ecx & 0xff) > 5) {
                        uint32_t direct = 0;
                        ecx = (ecx & 0xffffff00u) | (((ecx & 0xff) - 4) & 0xff);
                        do {
                            uint32_t code;
                            if (!inside(u, u->in, 4))
                                return -1;
                            code = vg_bswap32(rd32(u, u->in));
                            u->range >>= 1;
                            code -= u->low;
                            direct <<= 1;
                            if (code >= u->range) {
                                direct++;
                                u->low += u->range;
                            }
                            normalize(u);
                        } while (--ecx);
                        ecx = 4;
                        ebp += direct << 4;
                        probs = ebx + 0x18;
                    }
                    temp = ecx;
                    if (tree(u, 1, 1u << ((ecx & 0xff) & 31), probs, &eax) < 0)
                        return -1;
                    ecx = temp;
                    rev = (uint32_t)((int32_t)eax >> 31);
                    do { /* the tree's bits, least significant first */
                        rev += rev + (eax & 1);
                        eax >>= 1;
                    } while (--ecx);
                    ebp += rev;
                }
                ebp++;
                ecx = len_code;
            } else {
                /* a repeated distance */
                edx += ecx;
                if (bit(u, edx)) {
                    edx += 0x60;
                    if (bit(u, edx)) {
                        edx += ecx;
                        b = bit(u, edx);
                        temp = ebp;
                        ebp = st[4];
                        st[4] = st[3];
                        st[3] = temp;
                        if (b) {
                            temp = ebp;
                            ebp = st[5];
                            st[5] = temp;
                        }
                    } else {
                        temp = ebp;
                        ebp = st[3];
                        st[3] = temp;
                    }
                } else {
                    edx += ecx;
                    if (!bit(u, edx)) {
                        /* one byte at the last distance */
                        int64_t from = edi - (int64_t)st[2];
                        eax |= 1;
                        save_eax = eax;
                        ecx = (ecx & 0xffffff00u) | 0x80;
                        if (!inside(u, from, 1) || !inside(u, edi, 1))
                            return -1;
                        u->b[edi] = u->b[from];
                        edi++;
                        u->written++;
                        continue;
                    }
                }
                save_eax = eax;
                if (length(u, eax, &ecx, ebx + 0x778, &len_code) < 0)
                    return -1;
                eax = ecx;
                ecx = len_code;
            }
            if (!inside(u, edi, ecx) || !inside(u, edi - (int64_t)ebp, (uint64_t)ecx + 1))
                return -1;
            st[2] = ebp;
            for (i = 0; i < ecx; i++, edi++)
                u->b[edi] = u->b[edi - (int64_t)ebp];
            u->written += ecx;
            eax = (eax & 0xffffff00u) | u->b[edi - (int64_t)ebp];
            ecx = 0x80;
        } else {
            /* a literal, matched against the byte at the last distance after a match */
            uint32_t al = eax & 0xff;
            int64_t base;
            do {
                al = al >= 3 ? al - 3 : 0;
            } while (al >= 7);
            eax = (eax & 0xffffff00u) | al;
            save_eax = eax;
            if (edi > start && edi < u->size) {
                if (!inside(u, edi - 1, 1))
                    return -1;
                ebp = (uint32_t)(u->b[edi - 1] >> (shift & 31));
            } else {
                ebp = 0;
            }
            ebp *= 0x300;
            base = ebx + (int64_t)(uint32_t)((ebp << 2) + 0x1008);
            eax = (eax & 0xffffff00u) | 1;
            if (ecx) {
                uint8_t mask = (uint8_t)ecx;
                int64_t at = edi - (int64_t)st[2];
                if (!inside(u, at, 1))
                    return -1;
                for (;;) {
                    uint8_t a;
                    /* re-read each time: a probability update may have just rewritten it */
                    eax = (eax & 0xffff00ffu) | ((u->b[at] & mask) ? 0x200u : 0x100u);
                    b = bit(u, base + (int64_t)(uint32_t)(eax << 2));
                    a = (uint8_t)((eax & 0xff) * 2 + b);
                    eax = (eax & 0xffffff00u) | a;
                    mask >>= 1;
                    if (!mask)
                        break;
                    if (!((((eax >> 8) & 0xff) - a) & 1)) {
                        eax &= 0xffff00ffu;
                        if (tree(u, eax, 0x100, base, &eax) < 0)
                            return -1;
                        break;
                    }
                }
            } else {
                ecx = (ecx & 0xffff00ffu) | 0x100;
                if (tree(u, eax, ecx, base, &eax) < 0)
                    return -1;
            }
            ecx = 0;
        }
        if (!inside(u, edi, 1))
            return -1;
        u->b[edi++] = (uint8_t)eax;
        u->written++;
    } while (edi < end);
    return 0;
}

static void fill(upk *u, int64_t *at, uint32_t value, uint32_t count)
{
    while (count--) {
        wr32(u, *at, value);
        *at += 4;
    }
}

/* The probabilities' initial values: the coder's range and low words, four distances of
 * 1, then count probabilities of 0x400 (the caller checked the room). */
static void init_tables(upk *u, int64_t at, uint32_t count)
{
    fill(u, &at, 0xffffffffu, 1);
    fill(u, &at, 0, 1);
    fill(u, &at, 1, 4);
    fill(u, &at, 0x400, count);
}

enum { V399, V11_12, V0151477, V0297729 };

/* libclamav's unupack: 0 with the section to rebuild (its offset in the image and size)
 * and the original entry point, or -1. */
static int unupack(upk *u, int upack, const uint8_t *epb, uint32_t vma, uint32_t ep,
                   uint32_t base, uint32_t va, uint32_t *raw, uint32_t *rsz, uint32_t *entry)
{
    int version = V399;
    int64_t esi, edi = 0, ebx, end, alvalue, paddr, pushed;
    uint32_t count, shlsize, original_ep, save3 = 0, ecx = 0, j;

    if (upack) {
        uint32_t aljump, shroff, lngjmpoff, jmp, nd, tail, movesi;
        if (epb[5] == 0xff && epb[6] == 0x36)
            version = V0297729;
        movesi = vg_rd32(epb + 1);
        esi = (uint32_t)(movesi - vma);
        if (!inside(u, esi, 12))
            return -1;
        original_ep = rd32(u, esi) - vma;
        esi += 8;
        if (version == V399) {
            edi = (uint32_t)(rd32(u, esi) - vma);
            if (!inside(u, (int64_t)ep + 0xa, 2) || u->b[(int64_t)ep + 0xa] != 0xeb)
                return -1;
            esi = (int64_t)(int8_t)u->b[(int64_t)ep + 0xb] + (int64_t)ep + 0xc;
            alvalue = esi + 0x1a;
            if (!inside(u, alvalue, 2) || u->b[alvalue] != 0xeb)
                return -1;
            alvalue++;
            alvalue += (int64_t)u->b[alvalue] + 1 + 0xa;
            lngjmpoff = 8;
        } else {
            if (!inside(u, (int64_t)ep + 7, 5) || u->b[(int64_t)ep + 7] != 0xe9)
                return -1;
            esi = (int64_t)(int32_t)rd32(u, (int64_t)ep + 8) + (int64_t)ep + 0xc;
            alvalue = esi + 0x25;
            lngjmpoff = 10;
        }
        if (!inside(u, alvalue, 2) || u->b[alvalue] != 0xb5)
            return -1;
        alvalue++;
        count = u->b[alvalue];
        if (!inside(u, alvalue, lngjmpoff + 5) || u->b[alvalue + lngjmpoff] != 0xe9)
            return -1;
        shlsize = rd32(u, alvalue + lngjmpoff + 1);
        if (version == V399) /* esi + 0x1b was checked with esi + 0x1a */
            shlsize = (uint32_t)((int64_t)shlsize + esi + (int8_t)u->b[esi + 0x1b] + 0x34);
        else
            shlsize = (uint32_t)((int64_t)shlsize + esi + 0x35);
        /* the jecxz at +43 (0.39) or +46 (the other two) */
        alvalue = (int64_t)shlsize + 43;
        aljump = 8;
        shroff = 24;
        if (!inside(u, alvalue - 1, 2) || u->b[alvalue - 1] != 0xe3) {
            alvalue = (int64_t)shlsize + 46;
            if (!inside(u, alvalue - 1, 2) || u->b[alvalue - 1] != 0xe3)
                return -1;
            if (version != V0297729)
                version = V0151477;
            aljump = 7;
            shroff = 26;
        }
        alvalue += (int64_t)u->b[alvalue] + 1;
        if (!inside(u, alvalue, aljump + 5) || u->b[alvalue + aljump] != 0xe9)
            return -1;
        jmp = rd32(u, alvalue + aljump + 1);
        alvalue += (uint32_t)(jmp + aljump + 1 + 4 + 27);
        if (version == V0297729)
            alvalue += 2;
        /* shr ebp, context bits */
        if (!inside(u, (int64_t)shlsize + shroff, 3) || u->b[(int64_t)shlsize + shroff] != 0xc1 ||
            u->b[(int64_t)shlsize + shroff + 1] != 0xed)
            return -1;
        shlsize = u->b[(int64_t)shlsize + shroff + 2];
        count *= 0x100;
        if (shlsize < 2 || shlsize > 8)
            return -1;
        if (version == V0297729) {
            uint32_t from;
            if (!inside(u, esi + 6, 10) || u->b[esi + 6] != 0xbe || u->b[esi + 11] != 0xbf)
                return -1;
            from = rd32(u, esi + 7);
            if (from < base || from > vma)
                return -1;
            edi = (uint32_t)(rd32(u, esi + 12) - vma);
            esi = (uint32_t)(from - base);
            nd = 0x16;
            tail = 0x64;
        } else {
            if (!inside(u, esi + 7, 5) || u->b[esi + 7] != 0xbe)
                return -1;
            esi = (uint32_t)(rd32(u, esi + 8) - vma);
            nd = 0x27;
            tail = 0x34;
        }
        if (!inside(u, edi, nd * 4 + 24 + 4 * (uint64_t)count) || !inside(u, esi, nd * 4 + tail + 4))
            return -1;
        for (j = 0; j < nd; j++, esi += 4, edi += 4)
            wr32(u, edi, rd32(u, esi));
        save3 = rd32(u, esi + 4);
        paddr = (int64_t)rd32(u, edi - 4) - (int64_t)vma;
        ebx = edi;
        init_tables(u, edi, count);
        edi = (int64_t)(int32_t)rd32(u, esi + 0xc) - (int64_t)vma;
        if (version == V0297729)
            edi = (int64_t)vma - (int64_t)base;
        pushed = edi;
        if (version == V0297729) {
            end = (int64_t)(int32_t)rd32(u, esi + 0x64) - (int64_t)vma;
            save3 = rd32(u, esi + 0x40);
        } else {
            end = (int64_t)(int32_t)rd32(u, esi + 0x34) - (int64_t)vma;
        }
        if (edi > end)
            return -1;
        u->in = paddr;
        if (decode(u, 0, ebx, 0, edi, end, shlsize) < 0)
            return -1;
    } else {
        uint32_t ep_jmp, stosd_at, bits_at;
        int64_t start = (int64_t)vma + ep, save_edi;
        if (epb[0] == 0xbe && epb[5] == 0xad && epb[6] == 0x8b && epb[7] == 0xf8)
            version = V11_12;
        if (version == V11_12) {
            ep_jmp = 0x1a4;
            stosd_at = 0x1b;
            bits_at = 0x41;
            alvalue = start + 0x184;
        } else {
            ep_jmp = 0x217;
            stosd_at = 0x3a;
            bits_at = 0x5f;
            alvalue = start + 0x1c1;
        }
        if (!inside(u, start, ep_jmp + 4))
            return -1;
        original_ep = (uint32_t)(start + ep_jmp + 4) + rd32(u, start + ep_jmp);
        count = u->b[start + stosd_at];
        shlsize = 8 - (uint32_t)u->b[start + bits_at];
        if (shlsize < 2 || shlsize > 8)
            return -1;
        count *= 0x100;
        esi = start;
        if (version == V399) {
            uint32_t ebx_u, save1;
            int32_t n;
            int64_t save2;
            uint64_t steps;
            esi += 4;
            ecx = rd32(u, esi + 2);
            wr32(u, esi + 2, 0);
            if (!ecx)
                return -1;
            esi -= (uint32_t)(ecx - 2);
            if (!inside(u, esi, 12))
                return -1;
            ebx_u = (uint32_t)(esi - ((int64_t)(int32_t)rd32(u, esi) - (int64_t)base));
            esi += 4;
            save2 = edi = (int64_t)(int32_t)rd32(u, esi) - (int64_t)base;
            esi += 4;
            n = (int32_t)rd32(u, esi);
            if (n < 0)
                return -1;
            esi += 4;
            if (((uint64_t)count + (uint32_t)n) * 4 > 0xffffffffu || n >= (1 << 29))
                return -1; /* (libclamav's int n * 4 would be negative: the check fails) */
            if (!inside(u, esi, (uint64_t)n * 4) ||
                !inside(u, edi, (uint32_t)(((uint32_t)n + count) * 4)))
                return -1;
            for (; n--; edi += 4, esi += 4)
                wr32(u, edi, rd32(u, esi));
            if (!inside(u, save2, 8))
                return -1;
            ecx = rd32(u, save2);
            save2 += 4;
            /* esi += ebx_u + 4, ecx times (2^32 times for 0), as 64-bit pointer arithmetic */
            steps = ecx ? ecx : 0x100000000ull;
            esi = (int64_t)((uint64_t)save2 + steps * ((uint64_t)ebx_u + 4));
            ecx = 0;
            if (!inside(u, esi, 4))
                return -1;
            save1 = rd32(u, esi);
            esi += 4;
            fill(u, &edi, save1, count);
            if (!inside(u, esi + 0x10, 4))
                return -1;
            wr32(u, esi + 0x10, rd32(u, esi + 0x10) + ebx_u);
            ebx = esi + 0x14;
            esi = save2;
            save_edi = edi = (uint32_t)(rd32(u, esi) - base);
            esi += 4;
            if (!inside(u, ebx - 4, 12 + 4 * 4) || !inside(u, esi + 0x24, 4) ||
                !inside(u, esi + 0x40, 4))
                return -1;
            paddr = (int64_t)(int32_t)rd32(u, ebx - 4) - (int64_t)base;
            pushed = edi;
            end = (int64_t)(int32_t)rd32(u, esi + 0x24) - (int64_t)base;
            {
                uint32_t a = rd32(u, ebx), b = rd32(u, ebx + 4);
                wr32(u, ebx, b);
                wr32(u, ebx + 4, a);
            }
            (void)save_edi;
        } else {
            /* 1.1/1.2: the parameters sit at a fixed place in the header (which libclamav
             * reads unchecked) */
            if (!inside(u, 0x130, 0x2c))
                return -1;
            esi = 0x148;
            edi = (int64_t)(int32_t)rd32(u, esi) - (int64_t)base;
            esi += 4;
            save_edi = edi;
            paddr = (int64_t)rd32(u, esi) - (int64_t)base;
            esi += 4;
            edi += 4;
            ebx = edi;
            if (((uint64_t)count + 6) * 4 > 0xffffffffu)
                return -1;
            if (!inside(u, edi, (uint32_t)((6 + count) * 4)))
                return -1;
            init_tables(u, edi, count);
            edi = (int64_t)(int32_t)rd32(u, esi) - (int64_t)base;
            pushed = edi;
            esi += 8;
            ecx = 0;
            end = (int64_t)(int32_t)rd32(u, esi - 0x28) - (int64_t)base;
            esi = save_edi;
        }
        if (edi > end)
            return -1;
        u->in = paddr;
        if (decode(u, ecx, ebx, ecx, edi, end, shlsize) < 0)
            return -1;
        if (version == V399)
            save3 = rd32(u, esi + 0x40);
        else
            save3 = rd32(u, start + 0x174);
    }

    /* E8/E9 calls whose first byte is the marker: big-endian absolute back to relative */
    if (!inside(u, alvalue, 1))
        return -1;
    {
        uint8_t marker = u->b[alvalue];
        uint32_t at = 0;
        while (save3) {
            uint8_t op;
            if (!inside(u, pushed + at, 1))
                return -1;
            op = u->b[pushed + at];
            if (op == 0xe8 || op == 0xe9) {
                int64_t adr = pushed + at + 1;
                uint32_t v;
                at++;
                if (!inside(u, adr, 4))
                    return -1;
                v = rd32(u, adr);
                if ((v & 0xff) != marker)
                    continue;
                wr32(u, adr, vg_bswap32(v & 0xffffff00u) - at - 4);
                at += 4;
                save3--;
            } else {
                at++;
            }
        }
    }
    *rsz = (uint32_t)(end - pushed);
    if ((!upack && (uint32_t)(va + *rsz) > (uint64_t)u->size) || (upack && *rsz > (uint64_t)u->size))
        return -1;
    *raw = upack ? 0 : va;
    *entry = original_ep;
    return 0;
}

static PyObject *py_unpack(PyObject *self, PyObject *args)
{
    Py_buffer buf, epb;
    int upack, rc = -1;
    unsigned long vma, ep, base, va;
    uint32_t raw = 0, rsz = 0, entry = 0;
    (void)self;

    if (!PyArg_ParseTuple(args, "w*iy*kkkk", &buf, &upack, &epb, &vma, &ep, &base, &va))
        return NULL;
    if (epb.len >= 8 && buf.len > 0 && buf.len < ((Py_ssize_t)1 << 40)) {
        upk u;
        memset(&u, 0, sizeof(u));
        u.b = (uint8_t *)buf.buf;
        u.size = (int64_t)buf.len;
        Py_BEGIN_ALLOW_THREADS
        rc = unupack(&u, upack, (const uint8_t *)epb.buf, (uint32_t)vma, (uint32_t)ep,
                     (uint32_t)base, (uint32_t)va, &raw, &rsz, &entry);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&epb);
    if (rc < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(kkk)", (unsigned long)raw, (unsigned long)rsz, (unsigned long)entry);
}

static PyMethodDef methods[] = {
    {"unpack", py_unpack, METH_VARARGS,
     "unpack(image, upack, ep_bytes, vma, ep, base, va) -> (raw, size, entry) | None: "
     "Upack unpacking in place."},
    {NULL, NULL, 0, NULL},
};

VG_MODULE(_unpack_upack, "Upack unpacking.", methods)
