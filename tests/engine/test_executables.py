"""Tests for vigil.engine.executables: header facts must equal what clamscan 1.4.6 computes.

Hard-coded values were read from ``clamscan --debug`` and ``sigtool --mdb/--imp`` and probed
with EntryPoint/NumberOfSections ldb conditions and EP/Sx/SL ndb offsets on the real binary.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from vigil.engine import executables
from vigil.engine.executables import (
    ExeInfo,
    Section,
    macho_fat_members,
    parse_elf,
    parse_executable,
    parse_macho,
    parse_pe,
    section_hash_inputs,
)

UNIT = Path(__file__).resolve().parents[1] / "data" / "clamav-unit"
PE_ALLMATCH = UNIT / "pe_allmatch"
HASHES = {32: "md5", 40: "sha1", 64: "sha256"}


# ---------------------------------------------------------------------------------------------
# Builders for small, harmless executables


def filler(size: int) -> bytearray:
    """Bytes with period 251 (prime, so never in step with alignments): probes stay unique."""
    return bytearray((bytes(range(251)) * (size // 251 + 1))[:size])


def build_pe(
    sections: list[tuple[int, int, int, int]],
    *,
    entry: int,
    pe64: bool = False,
    salign: int = 0x1000,
    falign: int = 0x200,
    header_size: int = 0x200,
    directories: dict[int, tuple[int, int]] | None = None,
    size: int | None = None,
) -> bytearray:
    """A PE whose sections are (VirtualAddress, VirtualSize, PointerToRawData, SizeOfRawData)."""
    dirs = directories or {}
    lfanew = 0x40
    file_header = b"PE\0\0" + struct.pack(
        "<HHIIIHH",
        0x8664 if pe64 else 0x14C,
        len(sections),
        0,
        0,
        0,
        (112 if pe64 else 96) + 128,
        0x102,
    )
    # Magic, linker version, code sizes, entry point, bases, alignments, versions, sizes,
    # subsystem, stack/heap sizes, loader flags, NumberOfRvaAndSizes.
    tail = (4, 0, 0, 0, 4, 0, 0, 0x10000, header_size, 0, 2, 0, 0, 0, 0, 0, 0, 16)
    if pe64:
        layout = "<HBBIIIIIQII6HIIIIHHQQQQII"
        optional = struct.pack(
            layout, 0x20B, 1, 0, 0, 0, 0, entry, 0x1000, 0x400000, salign, falign, *tail
        )
    else:
        layout = "<HBBIIIIIIIII6HIIIIHHIIIIII"
        optional = struct.pack(
            layout, 0x10B, 1, 0, 0, 0, 0, entry, 0x1000, 0, 0x400000, salign, falign, *tail
        )
    optional += b"".join(struct.pack("<II", *dirs.get(i, (0, 0))) for i in range(16))
    table = b"".join(
        struct.pack("<8sIIIIIIHHI", b".s%d" % i, vsize, va, rsize, raw, 0, 0, 0, 0, 0xE0000020)
        for i, (va, vsize, raw, rsize) in enumerate(sections)
    )
    head = b"MZ" + bytes(58) + struct.pack("<I", lfanew) + file_header + optional + table
    end = size if size is not None else max([len(head)] + [r + s for _, _, r, s in sections])
    data = filler(end)
    data[: len(head)] = head
    return data


def import_blob(base_va: int, dlls: list[tuple[bytes, list[bytes | int]]]) -> tuple[bytes, int]:
    """An import directory placed at ``base_va``; ints are imports by ordinal."""
    blob = bytearray(20 * (len(dlls) + 1))
    descriptors = []
    for dll, functions in dlls:
        thunks = []
        for function in functions:
            if isinstance(function, int):
                thunks.append(0x8000_0000 | function)
                continue
            blob += bytes(len(blob) % 2)
            thunks.append(base_va + len(blob))
            blob += b"\0\0" + function + b"\0"
        blob += bytes(-len(blob) % 4)
        lookup = base_va + len(blob)
        blob += struct.pack(f"<{len(thunks) + 1}I", *thunks, 0)
        descriptors.append((lookup, base_va + len(blob)))
        blob += dll + b"\0"
    for i, (lookup, name) in enumerate(descriptors):
        blob[20 * i : 20 * i + 20] = struct.pack("<IIIII", lookup, 0, 0, name, lookup)
    return bytes(blob), 20 * (len(dlls) + 1)


def build_pe_with_imports(
    dlls: list[tuple[bytes, list[bytes | int]]], *, pe64: bool = False, tail: int = 0x400
) -> bytes:
    blob, table_size = import_blob(0x2000, dlls)
    raw_size = -(-len(blob) // 0x200) * 0x200
    data = build_pe(
        [(0x1000, 0x1000, 0x200, 0x200), (0x2000, 0x1000, 0x400, raw_size)],
        entry=0x1000,
        pe64=pe64,
        directories={1: (0x2000, table_size)},
        size=0x400 + raw_size + tail,
    )
    data[0x400 : 0x400 + len(blob)] = blob
    return bytes(data)


def build_elf(
    *,
    is64: bool = True,
    big_endian: bool = False,
    entry: int = 0x401010,
    program: list[tuple[int, int, int, int]] | None = None,
    sections: list[tuple[int, int, int]] | None = None,
    shentsize: int | None = None,
    size: int = 0x400,
) -> bytes:
    """An ELF with program headers (type, offset, vaddr, memsz) and sections (addr, off, size)."""
    order = ">" if big_endian else "<"
    program = [(1, 0, 0x400000, 0x2000)] if program is None else program
    sections = [(0, 0, 0), (0x401000, 0x100, 0x80)] if sections is None else sections
    ehsize, phsize, shsize = (64, 56, 64) if is64 else (52, 32, 40)
    shoff = ehsize + phsize * len(program)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 2 if big_endian else 1, 1]) + bytes(9)
    counts = (ehsize, phsize, len(program), shsize if shentsize is None else shentsize)
    if is64:
        header = ident + struct.pack(
            order + "HHIQQQIHHHHHH", 2, 62, 1, entry, ehsize, shoff, 0, *counts, len(sections), 0
        )
        phdrs = [struct.pack(order + "IIQQQQQQ", t, 5, o, v, v, m, m, 0) for t, o, v, m in program]
        shdrs = [
            struct.pack(order + "IIQQQQIIQQ", 0, 1, 6, a, o, s, 0, 0, 1, 0) for a, o, s in sections
        ]
    else:
        header = ident + struct.pack(
            order + "HHIIIIIHHHHHH", 2, 3, 1, entry, ehsize, shoff, 0, *counts, len(sections), 0
        )
        phdrs = [struct.pack(order + "8I", t, o, v, v, m, m, 5, 0) for t, o, v, m in program]
        shdrs = [struct.pack(order + "10I", 0, 1, 6, a, o, s, 0, 0, 1, 0) for a, o, s in sections]
    head = header + b"".join(phdrs) + b"".join(shdrs)
    data = filler(max(size, len(head)))
    data[: len(head)] = head
    return bytes(data)


def build_macho(
    cpu: int, *, is64: bool = False, big_endian: bool = False, pc: int = 0x1010
) -> bytes:
    """A Mach-O with one 64-byte __text section at file offset 0x200 (address 0x1000)."""
    order = ">" if big_endian else "<"
    if is64:
        section = struct.pack(
            order + "16s16sQQ8I", b"__text", b"__TEXT", 0x1000, 0x40, 0x200, 2, 0, 0, 0, 0, 0, 0
        )
        segment = struct.pack(
            order + "II16s4Q4I", 0x19, 72 + 80, b"__TEXT", 0x1000, 0x1000, 0, 0x300, 7, 5, 1, 0
        )
    else:
        section = struct.pack(
            order + "16s16s9I", b"__text", b"__TEXT", 0x1000, 0x40, 0x200, 2, 0, 0, 0, 0, 0
        )
        segment = struct.pack(
            order + "II16s8I", 1, 56 + 68, b"__TEXT", 0x1000, 0x1000, 0, 0x300, 7, 5, 1, 0
        )
    if cpu == 18:  # PowerPC: srr0 is the first of 40 words
        state = struct.pack(order + "40I", pc, *([0] * 39))
    elif cpu == 18 | 0x0100_0000:  # PowerPC 64: srr0 first, 312-byte state
        state = struct.pack(order + "Q", pc) + bytes(304)
    elif cpu == 7:  # i386: eip is register 10 of 16
        state = struct.pack(order + "16I", *([0] * 10), pc, *([0] * 5))
    else:  # x86-64: rip is register 16 of 21
        state = struct.pack(order + "21Q", *([0] * 16), pc, *([0] * 4))
    thread = struct.pack(order + "IIII", 5, 16 + len(state), 1, len(state) // 4) + state
    commands = segment + section + thread
    magic = 0xFEEDFACF if is64 else 0xFEEDFACE
    header = struct.pack(order + "7I", magic, cpu, 3, 2, 2, len(commands), 0) + bytes(4 * is64)
    data = filler(0x300)
    data[:0x200] = (header + commands).ljust(0x200, b"\0")
    return bytes(data)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def pe(data: bytes | bytearray) -> ExeInfo:
    info = parse_pe(bytes(data))
    assert info is not None
    return info


def elf(data: bytes) -> ExeInfo:
    info = parse_elf(data)
    assert info is not None
    return info


# ---------------------------------------------------------------------------------------------
# clam.exe and pe_allmatch/test.exe


def test_clam_exe(clam_exe: Path) -> None:
    data = clam_exe.read_bytes()
    info = parse_executable(data)
    assert info == parse_pe(data)
    assert info is not None and info.kind == "pe" and not info.pe64 and info.target_ok
    # clamscan --debug: AddressOfEntryPoint 0x1040, one section (PointerToRawData 1, aligned
    # down to 0), "EntryPoint offset: 0x40".
    assert info.entry_point == 0x40
    assert info.sections == (Section(0, 512, 0x1000, 0x1000),)
    assert info.version_info == ()
    assert section_hash_inputs(info) == [(0, 512)]
    assert md5(data[:512]) == "23db1dd3f77fae25610b6a32701313ae"
    assert info.imphash == ("98c88d882f01a3f6ac1e5f7dfd761624", 39)
    assert info.imports is not None and len(info.imports) == 39


TEST_EXE_SECTIONS = (
    Section(0x400, 0x8600, 0x1000, 0x9000),  # .text
    Section(0x8A00, 0x11D600, 0xA000, 0x11E000),  # .data (holds the embedded PEs)
    Section(0x126000, 0xE00, 0x128000, 0x1000),  # .rdata
    Section(0, 0, 0x129000, 0x1000),  # .bss
    Section(0x126E00, 0x800, 0x12A000, 0x1000),  # .idata
    Section(0x127600, 0x200, 0x12B000, 0x1000),  # .CRT
    Section(0x127800, 0x200, 0x12C000, 0x1000),  # .tls
    Section(0x127A00, 0x38600, 0x12D000, 0x39000),  # .rsrc
)


@pytest.fixture(scope="module")
def test_exe() -> tuple[bytes, ExeInfo]:
    data = (PE_ALLMATCH / "test.exe").read_bytes()
    info = parse_pe(data)
    assert info is not None
    return data, info


def test_test_exe_layout(test_exe: tuple[bytes, ExeInfo]) -> None:
    data, info = test_exe
    assert info.entry_point == 0x8C0  # AddressOfEntryPoint 0x14c0 inside .text
    assert info.sections == TEST_EXE_SECTIONS
    assert section_hash_inputs(info) == [
        (s.raw_offset, s.raw_size) for s in TEST_EXE_SECTIONS if s.raw_size
    ]
    assert info.imphash == ("ddeba1ab394d6c43225d83208b2d8ee3", 1351)
    # clamscan --debug: "VersionInfo (15fba6): 'CompanyName'=..." and seven more.
    assert info.version_info == (
        0x15FBA6,
        0x15FBEA,
        0x15FC3E,
        0x15FC82,
        0x15FCC6,
        0x15FD12,
        0x15FD66,
        0x15FDAA,
    )


def alert_sigs(suffix: str) -> list[list[str]]:
    return [
        line.split(":")
        for path in sorted((PE_ALLMATCH / "alert-sigs").glob(f"*{suffix}"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def test_test_exe_section_hash_sigs(test_exe: tuple[bytes, ExeInfo]) -> None:
    data, info = test_exe
    hashed = [data[o : o + n] for o, n in section_hash_inputs(info)]
    sigs = alert_sigs(".mdb") + alert_sigs(".msb")
    assert len(sigs) == 42
    for size, digest, name, *_ in sigs:
        candidates = [s for s in hashed if size == "*" or len(s) == int(size)]
        assert any(hashlib.new(HASHES[len(digest)], s).hexdigest() == digest for s in candidates), (
            name
        )


def test_test_exe_import_hash_sigs(test_exe: tuple[bytes, ExeInfo]) -> None:
    _, info = test_exe
    assert info.imports is not None
    sigs = alert_sigs(".imp")
    assert len(sigs) == 6
    for digest, size, name, *_ in sigs:
        assert size in ("*", str(len(info.imports))), name
        assert hashlib.new(HASHES[len(digest)], info.imports).hexdigest() == digest, name


def resolve_offset(offset: str, info: ExeInfo) -> tuple[int, int] | None:
    """The [min, max] window of a match start for EP/Sx/SL/SEx offsets (ClamAV cli_caloff)."""
    base, _, shift_text = offset.partition(",")
    shift = int(shift_text or 0)
    assert info.entry_point is not None
    if base.startswith("EP+"):
        start = info.entry_point + int(base[3:])
    elif base.startswith("EP-"):
        start = info.entry_point - int(base[3:])
    elif base.startswith("SL+"):
        start = info.sections[-1].raw_offset + int(base[3:])
    elif base.startswith("SE"):
        section = info.sections[int(base[2:])]
        return section.raw_offset, section.raw_offset + section.raw_size + shift
    elif base.startswith("S"):
        index, _, plus = base[1:].partition("+")
        start = info.sections[int(index)].raw_offset + int(plus)
    else:
        return None
    return start, start + shift


def test_test_exe_offset_sigs(test_exe: tuple[bytes, ExeInfo]) -> None:
    data, info = test_exe
    checked = 0
    for name, _, offset, pattern, *_ in alert_sigs(".ndb"):
        window = resolve_offset(offset, info)
        if window is None:
            continue
        needle = bytes.fromhex(pattern)
        found = data.find(needle, window[0])
        assert 0 <= found <= window[1], name
        checked += 1
    assert checked == 8  # EP+ and S1+ sigs, exact and broad windows


def test_test_exe_version_info_sigs(test_exe: tuple[bytes, ExeInfo]) -> None:
    data, info = test_exe
    sigs = [sig for sig in alert_sigs(".ndb") if sig[2] == "VI"]
    assert len(sigs) == 8
    for name, _, _, pattern, *_ in sigs:
        needle = bytes.fromhex(pattern)
        assert any(data[at : at + len(needle)] == needle for at in info.version_info), name


@pytest.mark.parametrize("sample", ["clam_ISmsi_ext.exe", "clam_ISmsi_int.exe"])
def test_installshield_version_info(scanfiles: Path, sample: str) -> None:
    data = (scanfiles / sample).read_bytes()
    info = parse_pe(data)
    assert info is not None
    # The two subsignatures of spec T61 (Clam-VI-Test:Target).
    company = "CompanyName\0\0company".encode("utf-16-le")
    product = "ProductName\0\0clam".encode("utf-16-le")
    assert (
        bytes.fromhex(
            "43006f006d00700061006e0079004e0061006d0065000000000063006f006d00700061006e007900"
        )
        == company
    )
    starts = {
        key: [at for at in info.version_info if data.startswith(key, at)]
        for key in (company, product)
    }
    assert starts == {company: [0xDEDA2], product: [0xDF19E]}
    # clamscan --debug lists nine records; Internal Build Number is the last.
    assert info.version_info == (
        0xDEDA2,
        0xDEE3E,
        0xDEEE6,
        0xDEF6A,
        0xDEFE6,
        0xDF112,
        0xDF19E,
        0xDF22A,
        0xDF2AA,
    )
    assert info.entry_point == 349123


# ---------------------------------------------------------------------------------------------
# PE quirks (each checked against clamscan 1.4.6 / sigtool 1.4.6)

TWO_SECTIONS = [(0x1000, 0x800, 0x200, 0x400), (0x2000, 0x100, 0x600, 0x200)]


def test_pe32_plus_sections_are_hashed_but_imports_are_not() -> None:
    info = pe(build_pe(TWO_SECTIONS, entry=0x1010, pe64=True))
    assert info.pe64 and info.entry_point == 0x210
    assert section_hash_inputs(info) == [(0x200, 0x400), (0x600, 0x200)]
    assert pe(build_pe_with_imports([(b"k.dll", [b"a"])])).imports == b"k.a"
    # The same import table in a PE32+: clamscan does no .imp scanning there.
    plus = pe(build_pe_with_imports([(b"k.dll", [b"a"])], pe64=True))
    assert plus.imports is None and plus.imphash is None


def test_pe_sections_beyond_eof_and_clipping() -> None:
    sections = TWO_SECTIONS + [(0x3000, 0x100, 0x4000, 0x200)]
    info = parse_pe(bytes(build_pe(sections, entry=0x1010, size=0x700)))
    assert info is not None and info.target_ok
    # Section 1 is clipped to the file; section 2 keeps its offset but loses its raw size,
    # and still counts for NumberOfSections (an ldb NumberOfSections:3-3 alerts).
    assert info.sections == (
        Section(0x200, 0x400, 0x1000, 0x1000),
        Section(0x600, 0x100, 0x2000, 0x1000),
        Section(0x4000, 0, 0x3000, 0x1000),
    )
    assert section_hash_inputs(info) == [(0x200, 0x400), (0x600, 0x100)]


def test_pe_scan_parse_only() -> None:
    # A section past EOF with a sign-bit VirtualAddress breaks the offset parser (EOF-n sigs
    # stop matching) but not the scan-time one (.mdb sigs still alert).
    sections = TWO_SECTIONS + [(0x8000_3000, 0x100, 0x4000, 0x200)]
    info = parse_pe(bytes(build_pe(sections, entry=0x1010, size=0x800)))
    assert info is not None and not info.target_ok
    assert section_hash_inputs(info) == [(0x200, 0x400), (0x600, 0x200)]
    inside = TWO_SECTIONS + [(0x8000_3000, 0x100, 0x600, 0x200)]
    assert parse_pe(bytes(build_pe(inside, entry=0x1010, size=0x800))) is None


def test_pe_alignment_rules() -> None:
    # A raw pointer aligned to 0x200 but not to FileAlignment switches the file to 0x200.
    fallback = pe(build_pe(TWO_SECTIONS, entry=0x1010, falign=0x400))
    assert [s.raw_offset for s in fallback.sections] == [0x200, 0x600]
    # Otherwise raw pointers are aligned down, raw sizes up (then clipped to the file).
    odd = build_pe(
        [(0x1000, 0x800, 0x210, 0x3F0), (0x2000, 0x100, 0x610, 0x100)],
        entry=0x1010,
        falign=0x300,
    )
    info = pe(odd)
    assert info.entry_point == 0x10
    assert info.sections == (
        Section(0, 0x600, 0x1000, 0x1000),
        Section(0x600, 0x110, 0x2000, 0x1000),
    )
    # No alignment at all: values are kept; an empty VirtualSize takes the raw size.
    raw = build_pe(
        [(0x1010, 0x800, 0x210, 0x3F0), (0x2000, 0, 0x610, 0x100)],
        entry=0x1010,
        falign=0,
        salign=0,
    )
    info = pe(raw)
    assert info.entry_point == 0x210
    assert info.sections[1] == Section(0x610, 0x100, 0x2000, 0x100)


def test_pe_entry_point_rules() -> None:
    assert pe(build_pe(TWO_SECTIONS, entry=0x40)).entry_point == 0x40
    assert pe(build_pe(TWO_SECTIONS, entry=0)).entry_point == 0
    assert parse_pe(bytes(build_pe(TWO_SECTIONS, entry=0x9000))) is None
    # Overlapping sections: the last one in the table wins.
    overlap = build_pe(
        [(0x1000, 0x2000, 0x200, 0x400), (0x1000, 0x100, 0x600, 0x200)], entry=0x1010
    )
    assert pe(overlap).entry_point == 0x610


def test_pe_import_string_normalisation() -> None:
    cases = {
        (b"KERNEL32.dll", (b"ExitProcess", b"GetProcAddress")): b"kernel32.exitprocess,"
        b"kernel32.getprocaddress",
        (b"WS2_32.dll", (1, 23, 9999)): b"ws2_32.accept,ws2_32.socket,ws2_32.ord9999",
        (b"oleaut32.dll", (2, 500)): b"oleaut32.sysallocstring,oleaut32.ord500",
        (b"api-ms-win.core.dll", (b"Fn",)): b"api-ms-win.core.dll.fn",  # first dot only
        (b"x.DLLfoo", (b"Q",)): b"x.q",
        (b"noext", (b"", b"h")): b"noext.,noext.h",
    }
    for (dll, functions), expected in cases.items():
        info = parse_pe(build_pe_with_imports([(dll, list(functions))]))
        assert info is not None and info.imports == expected, dll
    both = parse_pe(build_pe_with_imports([(b"a.sys", [b"x"]), (b"B.OCX", [3])]))
    assert both is not None and both.imphash == (md5(b"a.x,b.ord3"), 10)
    # One invalid function name and there is no import hash at all.
    assert pe(build_pe_with_imports([(b"k.dll", [b"ok", b"bad-name"])])).imphash is None


def test_pe_import_names_near_eof_are_dropped() -> None:
    # libclamav maps 256 name bytes after the 2-byte hint; a name closer than that to the end
    # of the file is silently skipped (sigtool --imp agrees: empty string, size 0).
    blob, _ = import_blob(0x2000, [(b"k.dll", [b"alpha", b"beta"])])
    data = build_pe(
        [(0x1000, 0x1000, 0x200, 0x200), (0x2000, 0x1000, 0x400, 0x200)],
        entry=0x1000,
        directories={1: (0x2000, 40)},
        size=0x400 + len(blob) + 200,
    )
    data[0x400 : 0x400 + len(blob)] = blob
    assert pe(data).imphash == (md5(b""), 0)
    data.extend(bytes(60))
    assert pe(data).imports == b"k.alpha,k.beta"


def test_pe_thunk_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executables, "_MAX_THUNKS", 2)
    assert pe(build_pe_with_imports([(b"k.dll", [b"a", b"b", b"c"])])).imports is None


def test_zm_is_parsed_but_not_dispatched() -> None:
    data = build_pe(TWO_SECTIONS, entry=0x1010)
    data[:2] = b"ZM"
    assert parse_pe(bytes(data)) is not None
    assert parse_executable(bytes(data)) is None


# ---------------------------------------------------------------------------------------------
# ELF


@pytest.mark.parametrize("is64", [True, False])
@pytest.mark.parametrize("big_endian", [False, True])
def test_elf_entry_and_sections(is64: bool, big_endian: bool) -> None:
    data = build_elf(is64=is64, big_endian=big_endian)
    info = parse_executable(data)
    assert info == parse_elf(data)
    assert info == ExeInfo(
        kind="elf",
        entry_point=0x1010,
        sections=(Section(0, 0, 0, 0), Section(0x100, 0x80, 0x401000, 0)),
    )
    assert section_hash_inputs(info) == []


def test_elf_rules() -> None:
    # Any program header type maps the entry point, the first match wins.
    notes = build_elf(
        program=[(4, 0x40, 0x400040, 0x100), (1, 0, 0x400000, 0x2000)], entry=0x400050
    )
    assert elf(notes).entry_point == 0x50
    assert elf(build_elf(entry=0)).entry_point == 0
    assert elf(build_elf(program=[])).entry_point == 0
    assert parse_elf(build_elf(entry=0x999999)) is None
    assert parse_elf(build_elf(program=[(1, 0, 0x400000, 0x2000)] * 129, size=0x3000)) is None
    # No sections is fine, but not with a bad e_shentsize; at most 256 sections.
    assert elf(build_elf(sections=[])).sections == ()
    assert parse_elf(build_elf(sections=[], shentsize=0)) is None
    assert len(elf(build_elf(sections=[(0, 0, 0)] * 256, size=0x5000)).sections) == 256
    assert parse_elf(build_elf(sections=[(0, 0, 0)] * 257, size=0x5000)) is None
    assert parse_elf(build_elf()[:0x80]) is None


# ---------------------------------------------------------------------------------------------
# Mach-O


@pytest.mark.parametrize(
    ("cpu", "is64", "big_endian", "entry_point"),
    [
        (7, False, False, 0),  # i386: the thread state is read, its eip ignored
        (7 | 0x0100_0000, True, False, 0),  # x86-64: thread command skipped
        (18, False, True, 0x210),  # PowerPC: srr0 mapped through the sections
        (18, False, False, 0x210),
        (18 | 0x0100_0000, True, True, 0x210),
    ],
)
def test_macho_entry_point(cpu: int, is64: bool, big_endian: bool, entry_point: int) -> None:
    data = build_macho(cpu, is64=is64, big_endian=big_endian)
    info = parse_executable(data)
    assert info == parse_macho(data)
    assert info == ExeInfo(
        kind="macho", entry_point=entry_point, sections=(Section(0x200, 0x40, 0x1000, 0x40),)
    )


def test_macho_rules() -> None:
    assert parse_macho(build_macho(18, big_endian=True, pc=0x5000)) is None  # pc in no section
    no_commands = bytearray(build_macho(7))
    no_commands[16:20] = bytes(4)
    assert parse_macho(bytes(no_commands)) is None
    assert parse_macho(build_macho(7)[:0x60]) is None


def test_macho_fat_members() -> None:
    ppc, x86 = build_macho(18, big_endian=True), build_macho(7)
    header = struct.pack(">II", 0xCAFEBABE, 3) + struct.pack(
        ">15I", 18, 0, 0x1000, len(ppc), 12, 7, 3, 0x3000, 0, 12, 7, 3, 0x9000, 10, 12
    )
    data = header.ljust(0x1000, b"\0") + ppc
    data = data.ljust(0x3000, b"\0") + x86
    assert parse_executable(data) is None
    # The length 0 member runs to EOF; the member past EOF is skipped.
    assert macho_fat_members(data) == [(0x1000, len(ppc)), (0x3000, len(x86))]
    java = struct.pack(">II", 0xCAFEBABE, 0x0034_0000 | 50)
    assert macho_fat_members(java.ljust(64, b"\0")) == []
    back = struct.pack(">II5I", 0xCAFEBABE, 1, 7, 3, 8, 100, 12).ljust(64, b"\0")
    assert macho_fat_members(back) == []


# ---------------------------------------------------------------------------------------------
# Robustness


def test_garbage_and_truncation(clam_exe: Path) -> None:
    assert parse_executable(b"") is None
    assert parse_executable(b"MZ") is None
    assert parse_executable(bytes(4096)) is None
    data = clam_exe.read_bytes()
    for cut in range(0, len(data) + 1, 7):
        parse_executable(data[:cut])
    assert parse_executable(memoryview(data)) == parse_executable(data)
    assert parse_executable(memoryview(data).cast("H")) == parse_executable(data)


def test_fuzzed_headers_never_raise(clam_exe: Path) -> None:
    seeds = [
        clam_exe.read_bytes(),
        build_pe_with_imports([(b"k.dll", [b"a", 3])]),
        bytes(build_pe(TWO_SECTIONS, entry=0x1010, pe64=True)),
        build_elf(),
        build_elf(is64=False, big_endian=True),
        build_macho(18, big_endian=True),
        build_macho(7 | 0x0100_0000, is64=True),
    ]
    rng = random.Random(20240611)
    interesting = [b"\xff\xff\xff\xff", b"\0\0\0\0", b"\0\0\0\x80", b"\xff\xff\0\0", b"\x01\0"]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(min(len(data), 0x600))
            if rng.random() < 0.5:
                data[at] = rng.randrange(256)
            else:
                word = rng.choice(interesting)
                data[at : at + len(word)] = word
        if rng.random() < 0.1:
            del data[rng.randrange(len(data)) :]
        info = parse_executable(bytes(data))
        if info is not None:
            for offset, size in section_hash_inputs(info):
                assert 0 <= offset and offset + size <= len(data)
        macho_fat_members(bytes(data))


# ---------------------------------------------------------------------------------------------
# Differential check against the real clamscan


def probe_signatures(data: bytes, info: ExeInfo) -> tuple[dict[str, list[str]], set[str]]:
    """Signatures that alert only if clamscan computes the same EP, sections and hashes."""
    target = {"pe": 1, "elf": 6, "macho": 9}[info.kind]
    head = data[:4].hex()
    files: dict[str, list[str]] = {"ldb": [], "ndb": [], "mdb": [], "imp": []}
    if info.target_ok:
        ep, count = info.entry_point, len(info.sections)
        files["ldb"] += [
            f"EPc;Engine:51-255,Target:{target},EntryPoint:{ep}-{ep};0;0:{head}",
            f"NoS;Engine:51-255,Target:{target},NumberOfSections:{count}-{count};0;0:{head}",
        ]
        probes = [("EP", "EP+0", ep)] + [
            (f"S{i}", f"S{i}+0", s.raw_offset) for i, s in enumerate(info.sections)
        ]
        if info.sections:
            probes.append(("SL", "SL+0", info.sections[-1].raw_offset))
        for name, where, at in probes:
            chunk = data[at : at + 12] if at is not None else b""
            if len(chunk) == 12 and len(set(chunk)) > 2:
                files["ndb"].append(f"{name}:{target}:{where}:{chunk.hex()}")
    seen = set()
    for i, (offset, size) in enumerate(section_hash_inputs(info)):
        key = (size, md5(data[offset : offset + size]))
        if key not in seen:  # clamscan keeps one name per (size, hash)
            seen.add(key)
            files["mdb"].append(f"{size}:{key[1]}:H{i}")
    if info.imports:
        length = len(info.imports)
        files["imp"].append(f"{md5(info.imports)}:{length}:IMP")
        files["imp"].append(f"{hashlib.sha256(info.imports).hexdigest()}:{length}:IMP256")
    expected = {
        line.split(":")[-1 if kind in ("mdb", "imp") else 0].split(";")[0]
        for kind, lines in files.items()
        for line in lines
    }
    return files, expected


@pytest.mark.differential
@pytest.mark.skipif(shutil.which("clamscan") is None, reason="clamscan not installed")
def test_against_clamscan(tmp_path: Path, scanfiles: Path) -> None:
    samples = {
        "clam.exe": (scanfiles / "clam.exe").read_bytes(),
        "clam-upack.exe": (scanfiles / "clam-upack.exe").read_bytes(),
        "clam_ISmsi_ext.exe": (scanfiles / "clam_ISmsi_ext.exe").read_bytes(),
        "pe64.exe": bytes(build_pe(TWO_SECTIONS, entry=0x1010, pe64=True)),
        "imports.exe": build_pe_with_imports([(b"WS2_32.dll", [1, b"Foo"]), (b"x.ocx", [b"y"])]),
        "clipped.exe": bytes(
            build_pe(TWO_SECTIONS + [(0x3000, 0x100, 0x4000, 0x200)], entry=0x1010, size=0x700)
        ),
        "elf32be": build_elf(is64=False, big_endian=True),
        "elf64": build_elf(
            program=[(4, 0x40, 0x400040, 0x100), (1, 0, 0x400000, 0x2000)], entry=0x400050
        ),
        "ppc.macho": build_macho(18, big_endian=True),
        "x86.macho": build_macho(7),
    }
    for name, data in samples.items():
        info = parse_executable(data)
        assert info is not None, name
        files, expected = probe_signatures(data, info)
        args = []
        for kind, lines in files.items():
            if lines:
                path = tmp_path / f"{name}.{kind}"
                path.write_text("\n".join(lines) + "\n")
                args += ["-d", str(path)]
        sample = tmp_path / name
        sample.write_bytes(data)
        result = subprocess.run(
            ["clamscan", "--no-summary", "--allmatch", *args, str(sample)],
            capture_output=True,
            text=True,
            check=False,
        )
        found = {
            line.rsplit(": ", 1)[1].removesuffix(".UNOFFICIAL FOUND")
            for line in result.stdout.splitlines()
            if line.endswith(" FOUND")
        }
        assert expected <= found, (name, sorted(expected - found), result.stderr[-500:])
