"""Generate a synthetic ClamAV database shaped like the official one, plus planted matches.

``python bench/gen_db.py --scale 0.01 --plant 12 --out bench/out/db-0.01`` writes bench.hsb,
bench.hdb, bench.mdb, bench.ndb and bench.ldb, ``planted.json`` (the planted signatures and the
exact file bytes they match, for build_corpus.py) and ``manifest.json``. Every value comes from
``random.Random`` seeded by ``--seed``: the same arguments give byte-identical files. Standard
library only; nothing here imports vigil.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import random
import string
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FULL_COUNTS", "generate"]

# Signature counts of the official database's shape (engine-design.md: about 8.3 M hashes,
# 160 k body and 150 k logical signatures); the hash split between files is an estimate.
FULL_COUNTS = {
    "hsb": 6_000_000,
    "hdb": 1_500_000,
    "mdb": 800_000,
    "ndb": 160_000,
    "ldb": 150_000,
}
HSB_ALGORITHMS = (("md5", 16, 85), ("sha256", 32, 13), ("sha1", 20, 2))
WILDCARD_SIZE_RATE = 2e-5  # `*`-size hash entries (need MinFL 73); they force hashing every file
CHUNK = 100_000  # lines per buffered write
MIN_BITS = 60.0  # random content a pattern that can fire on its own must carry
MIN_PART_BITS = 28.0  # ... and each of its parts

PLATFORMS = {
    0: ("Multios", "Win", "Unix"),
    1: ("Win",),
    2: ("Doc", "Xls", "Ppt"),
    3: ("Html", "Js"),
    6: ("Unix",),
    7: ("Txt", "Js", "Unix", "Win"),
    9: ("Osx",),
    10: ("Pdf",),
    12: ("Java",),
}
CATEGORIES = (
    "Trojan",
    "Malware",
    "Dropper",
    "Downloader",
    "Exploit",
    "Packed",
    "Virus",
    "Worm",
    "Ransomware",
    "Coinminer",
    "Backdoor",
    "Phishing",
    "Adware",
)
FAMILIES = (
    "Agent",
    "Generic",
    "Zusy",
    "Razy",
    "Mirai",
    "Gafgyt",
    "Emotet",
    "Qakbot",
    "AgentTesla",
    "Ramnit",
    "Sality",
    "Tsunami",
    "Xagent",
    "Valyria",
    "Obfus",
    "Iframe",
    "Kryptik",
    "Lokibot",
    "Remcos",
    "Nanocore",
    "Formbook",
    "Ursnif",
    "Dridex",
    "Cobaltstrike",
    "Meterpreter",
    "Xmrig",
    "Njrat",
    "Darkcomet",
    "Zbot",
    "Expiro",
    "Virut",
    "Neshta",
    "Shellcode",
    "Webshell",
    "Downldr",
    "Hafnium",
    "Pgminer",
    "Gitpaste",
    "Babyshark",
    "Conti",
)

# Frequent x86/x64 code bytes, with weights; every other byte value has weight 2.
CODE_WEIGHTS = {
    0x00: 24,
    0x8B: 40,
    0x89: 25,
    0xFF: 14,
    0x48: 30,
    0x83: 20,
    0xE8: 15,
    0x0F: 12,
    0x85: 10,
    0x74: 10,
    0x75: 10,
    0x45: 12,
    0x24: 10,
    0x4C: 8,
    0xC3: 6,
    0x55: 6,
    0x5D: 5,
    0x50: 5,
    0x51: 4,
    0x52: 4,
    0x53: 4,
    0x56: 5,
    0x57: 5,
    0x5E: 4,
    0x5F: 4,
    0x6A: 6,
    0x68: 6,
    0xEB: 6,
    0xC7: 6,
    0x44: 6,
    0x01: 8,
    0x04: 6,
    0x08: 6,
    0x10: 5,
    0xC0: 8,
    0xC4: 4,
    0xEC: 4,
    0xE5: 4,
    0x33: 5,
    0x31: 4,
    0xB8: 4,
    0x8D: 10,
    0xF8: 4,
    0xFC: 4,
    0x20: 4,
    0x40: 5,
}
CODE_BYTES = list(range(256))
CODE_W = [CODE_WEIGHTS.get(b, 2) for b in CODE_BYTES]
CODE_BITS = [0.6 * -math.log2(w / sum(CODE_W)) for w in CODE_W]  # discounted: code is not iid

# Strings that real signatures combine with rare ones; they carry next to no entropy.
COMMON_STRINGS = (
    "GetProcAddress",
    "LoadLibraryA",
    "VirtualAlloc",
    "VirtualProtect",
    "CreateRemoteThread",
    "WriteProcessMemory",
    "kernel32.dll",
    "ntdll.dll",
    "advapi32.dll",
    "user32.dll",
    "ws2_32.dll",
    "wininet.dll",
    "InternetOpenUrlA",
    "URLDownloadToFileA",
    "ShellExecuteA",
    "WinExec",
    "RegSetValueExA",
    "CreateMutexA",
    "IsDebuggerPresent",
    "GetTickCount",
    "cmd.exe",
    "powershell",
    "WScript.Shell",
    "Scripting.FileSystemObject",
    "ActiveXObject",
    "CreateObject",
    "document.write",
    "eval(",
    "unescape(",
    "fromCharCode",
    "window.location",
    "/bin/sh",
    "/bin/busybox",
    "/proc/self/exe",
    "/dev/null",
    "chmod 777",
    "wget ",
    "curl ",
    "User-Agent:",
    "Mozilla/5.0",
    "POST /",
    "GET /",
    "HTTP/1.1",
    "Content-Type:",
    "Host: ",
    "http://",
    "https://",
    ".exe",
    ".dll",
    ".php",
    ".bat",
    "Software\\Microsoft\\Windows\\CurrentVersion\\Run",
    "AutoOpen",
    "Document_Open",
    "Shell",
    "Chr(",
    "Environ(",
    "/JavaScript",
    "/OpenAction",
    "/Launch",
    "/EmbeddedFile",
    "getRuntime",
    "java/lang/Runtime",
    "exec",
    "base64",
    "encrypt",
    "password",
    "bitcoin",
    "stratum+tcp://",
)
WORDS = (
    "update",
    "client",
    "server",
    "config",
    "payload",
    "install",
    "service",
    "system",
    "windows",
    "temp",
    "data",
    "login",
    "admin",
    "upload",
    "gate",
    "panel",
    "bot",
    "task",
    "debug",
    "report",
    "invoice",
    "document",
    "secure",
    "account",
    "mail",
    "file",
    "host",
    "proxy",
    "socket",
    "buffer",
    "shell",
    "loader",
    "stub",
    "crypt",
    "key",
    "token",
    "cache",
    "image",
    "video",
    "news",
)
TLDS = (".com", ".net", ".org", ".ru", ".top", ".xyz", ".info", ".biz", ".cn", ".pw")
IDENT = string.ascii_letters + string.digits
LOWER_IDENT = string.ascii_lowercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"

# Text templates: ``{i}`` random identifier, ``{l}`` lower-case one, ``{w}`` a common word,
# ``{h}`` host name, ``{b}`` base64 run, ``{x}`` hex run, ``{n}`` IPv4 address.
TEXT_TEMPLATES = (
    "http://{h}/{l}/{w}.php?{w}={l}",
    "https://{h}/{w}/{i}",
    "C:\\Users\\Public\\{i}.exe",
    "%APPDATA%\\{i}\\{l}.dll",
    "Software\\Microsoft\\Windows\\CurrentVersion\\Run\\{i}",
    "cmd.exe /c {w} {l}.bat",
    "powershell -nop -w hidden -enc {b}",
    "{i}{i}",
    "{w}_{l}_{w}",
    "/tmp/.{l}",
    "wget http://{n}/{l}; chmod +x {l}",
    "curl -fsSL http://{h}/{l}.sh | sh",
    "{i}.{i}.{w}",
    "Global\\{x}-{x}",
    "{b}",
    'var {l} = "{b}";',
    "{i}@{h}",
    "{w}{i}{w}",
    "Dim {i} As String",
    "G:\\{i}\\{i}\\Release\\{l}.pdb",
)


@dataclass(frozen=True, slots=True)
class Fixed:
    """A run of exact bytes and the entropy (bits) it carries."""

    data: bytes
    bits: float


@dataclass(frozen=True, slots=True)
class Skip:
    """``n`` arbitrary bytes written as ``??`` runs or as ``{n}``."""

    n: int
    braces: bool


@dataclass(frozen=True, slots=True)
class Nibble:
    """``h?`` (high nibble fixed) or ``?h`` (low nibble fixed)."""

    value: int
    high: bool


@dataclass(frozen=True, slots=True)
class Alt:
    """``(aa|bb)`` (one of equal-length strings) or ``!(aa|bb)`` (none of them)."""

    options: tuple[bytes, ...]
    negated: bool


Element = Fixed | Skip | Nibble | Alt


@dataclass(frozen=True, slots=True)
class Gap:
    """A split between parts: ``*``, ``{n-m}``, ``{n-}`` or ``{-m}`` (``hi`` None = unbounded)."""

    lo: int
    hi: int | None

    def syntax(self) -> str:
        if self.lo == 0 and self.hi is None:
            return "*"
        if self.hi is None:
            return f"{{{self.lo}-}}"
        if self.lo == 0:
            return f"{{-{self.hi}}}"
        return f"{{{self.lo}-{self.hi}}}"


@dataclass(slots=True)
class Pattern:
    """A body pattern: parts of elements separated by gaps."""

    parts: list[list[Element]]
    gaps: list[Gap] = field(default_factory=list)

    @property
    def bits(self) -> float:
        return sum(e.bits for part in self.parts for e in part if isinstance(e, Fixed))

    def hex(self) -> str:
        out: list[str] = []
        for i, part in enumerate(self.parts):
            if i:
                out.append(self.gaps[i - 1].syntax())
            for e in part:
                out.append(element_syntax(e))
        return "".join(out)

    def instance(self, rng: random.Random, wide: bool = False, nocase: bool = False) -> bytes:
        """Bytes that this pattern matches (UTF-16LE for ``w``, random case for ``i``)."""
        out = bytearray()
        for i, part in enumerate(self.parts):
            if i:
                gap = self.gaps[i - 1]
                hi = gap.hi if gap.hi is not None else gap.lo + 40
                out += random_text(rng, rng.randint(gap.lo, hi)).encode()
            chunk = bytearray()
            for e in part:
                chunk += element_instance(rng, e)
            if nocase:
                chunk = bytearray(flip_case(rng, bytes(chunk)))
            if wide:
                chunk = bytearray(b"".join(bytes((c, 0)) for c in chunk))
            out += chunk
        return bytes(out)


def element_syntax(e: Element) -> str:
    if isinstance(e, Fixed):
        return e.data.hex()
    if isinstance(e, Skip):
        return f"{{{e.n}}}" if e.braces else "??" * e.n
    if isinstance(e, Nibble):
        return f"{e.value:x}?" if e.high else f"?{e.value:x}"
    body = "|".join(o.hex() for o in e.options)
    return f"!({body})" if e.negated else f"({body})"


def element_instance(rng: random.Random, e: Element) -> bytes:
    if isinstance(e, Fixed):
        return e.data
    if isinstance(e, Skip):
        return random_text(rng, e.n).encode()
    if isinstance(e, Nibble):
        low = rng.randrange(16)
        return bytes([(e.value << 4 | low) if e.high else (low << 4 | e.value)])
    if not e.negated:
        return rng.choice(e.options)
    while True:
        cand = rng.randbytes(len(e.options[0]))
        if cand not in e.options:
            return cand


def flip_case(rng: random.Random, data: bytes) -> bytes:
    return bytes(
        c ^ 0x20 if chr(c).isalpha() and c < 128 and rng.random() < 0.5 else c for c in data
    )


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(LOWER_IDENT, k=n))


# ---------------------------------------------------------------------------- byte models


class ByteModel:
    """Draws realistic-looking fixed runs: x86-like code, random data, strings."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def code(self, n: int) -> Fixed:
        rng = self.rng
        out: list[int] = []
        picks = rng.choices(CODE_BYTES, CODE_W, k=n * 2)
        for b in picks:
            if len(out) >= 2 and out[-1] == b and out[-2] == b:
                continue  # long runs of one byte are exactly what real files are full of
            out.append(b)
            if len(out) == n:
                break
        while len(out) < n:
            out.append(rng.randrange(1, 255))
        return Fixed(bytes(out), sum(CODE_BITS[b] for b in out))

    def data(self, n: int) -> Fixed:
        raw = bytearray(self.rng.randbytes(n))
        for i in range(2, n):  # no runs of three equal bytes
            if raw[i] == raw[i - 1] == raw[i - 2]:
                raw[i] ^= 0x5A
        return Fixed(bytes(raw), 7.5 * n)

    def text(self, n: int, lower: bool = False, wide: bool = False) -> Fixed:
        """About ``n`` bytes of string content (whole template fills, cut to ``n``)."""
        chars: list[str] = []
        bits: list[float] = []
        while len(chars) < n:
            if chars:
                sep = self.rng.choice(" _-./\\:=")
                chars.append(sep)
                bits.append(1.0)
            self.fill_template(chars, bits)
        start = self.rng.randrange(0, max(1, len(chars) - n + 1))
        sel = chars[start : start + n]
        total = sum(bits[start : start + n])
        text = "".join(sel)
        if lower:
            text = " ".join(text.lower().split()) or "x"
            text = text.replace("\\", "/")
        raw = text.encode("ascii")
        if wide:
            raw = text.encode("utf-16-le")
        return Fixed(raw, total)

    def fill_template(self, chars: list[str], bits: list[float]) -> None:
        rng = self.rng
        tpl = rng.choice(TEXT_TEMPLATES)
        i = 0
        while i < len(tpl):
            if tpl[i] == "{" and i + 2 < len(tpl) and tpl[i + 2] == "}":
                self.fill_slot(tpl[i + 1], chars, bits)
                i += 3
            else:
                chars.append(tpl[i])
                bits.append(0.2)
                i += 1

    def fill_slot(self, slot: str, chars: list[str], bits: list[float]) -> None:
        rng = self.rng
        if slot == "i":
            s = "".join(rng.choices(IDENT, k=rng.randint(5, 12)))
            per = 5.9
        elif slot == "l":
            s = random_text(rng, rng.randint(5, 10))
            per = 5.1
        elif slot == "w":
            s = rng.choice(WORDS)
            per = 5.3 / len(s)
        elif slot == "h":
            s = random_text(rng, rng.randint(6, 12)) + rng.choice(TLDS)
            per = 4.0
        elif slot == "b":
            s = "".join(rng.choices(B64, k=rng.randint(12, 40)))
            per = 6.0
        elif slot == "x":
            s = rng.randbytes(rng.randint(4, 8)).hex()
            per = 4.0
        else:
            s = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
            per = 2.5
        chars.extend(s)
        bits.extend([per] * len(s))

    def common(self, lower: bool = False, wide: bool = False) -> Fixed:
        text = self.rng.choice(COMMON_STRINGS)
        if lower:
            text = text.lower()
        return Fixed(text.encode("utf-16-le") if wide else text.encode(), 8.0)


# ---------------------------------------------------------------------------- pattern builder

# Content mix per target: (style, weight); styles are code, data, text, wide, lower.
TARGET_STYLES: dict[int, tuple[tuple[str, int], ...]] = {
    0: (("text", 40), ("code", 30), ("data", 30)),
    1: (("code", 40), ("text", 35), ("wide", 10), ("data", 15)),
    2: (("text", 50), ("data", 50)),
    3: (("lower", 100),),
    6: (("code", 50), ("text", 40), ("data", 10)),
    7: (("lower", 100),),
    9: (("code", 50), ("text", 30), ("data", 20)),
    10: (("text", 60), ("data", 40)),
    12: (("text", 50), ("code", 30), ("data", 20)),
}
# Length in bytes of a subsignature's content, after the official main.ldb (engine-design.md).
LENGTH_BINS = ((4, 9, 23), (10, 19, 36), (20, 29, 7), (30, 40, 18), (41, 80, 10), (81, 150, 6))


class PatternBuilder:
    """Builds ClamAV body patterns with a realistic mix of wildcards."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bytes = ByteModel(rng)

    def length(self) -> int:
        lo, hi, _ = self.rng.choices(LENGTH_BINS, [b[2] for b in LENGTH_BINS])[0]
        return self.rng.randint(lo, hi)

    def style(self, target: int) -> str:
        styles = TARGET_STYLES.get(target, TARGET_STYLES[0])
        return self.rng.choices([s for s, _ in styles], [w for _, w in styles])[0]

    def run(self, style: str, n: int) -> Fixed:
        if style == "code":
            return self.bytes.code(n)
        if style == "data":
            return self.bytes.data(n)
        if style == "wide":
            return self.bytes.text(max(2, n // 2), wide=True)
        while True:  # collapsing spaces can shorten lower-case text below 2 bytes
            fx = self.bytes.text(n, lower=style == "lower")
            if len(fx.data) >= min(n, 2):
                return fx

    def part(self, style: str, n: int, plain: bool, min_bits: float) -> list[Element]:
        """One part of about ``n`` content bytes and ``min_bits``; ``plain``: no wildcards.

        A part starts and ends with a fixed run of at least 2 bytes, as ClamAV requires.
        """
        rng = self.rng
        elems: list[Element] = []
        bits = 0.0
        used = 0
        while used < n or bits < min_bits:
            size = n - used if plain else rng.randint(4, 24)
            size = max(4, min(size, n - used))
            if elems and not plain and rng.random() < 0.5:
                elems.append(self.wildcard(style))
            fx = self.run(style, size)
            elems.append(fx)
            bits += fx.bits
            used += len(fx.data)
        return merge_fixed(elems)

    def wildcard(self, style: str) -> Element:
        rng = self.rng
        r = rng.random()
        if r < 0.7:
            n = rng.choice((1, 1, 1, 2, 2, 3, 4, 8, 16, 32))
            return Skip(n, braces=n > 2 and rng.random() < 0.85)
        if r < 0.78:
            b = rng.randrange(256)
            return Nibble(b >> 4 if rng.random() < 0.7 else b & 15, high=rng.random() < 0.7)
        if r < 0.95:
            width = 1 if rng.random() < 0.75 else rng.randint(2, 4)
            opts = {self.run(style if style != "wide" else "text", width).data[:width]}
            while len(opts) < rng.randint(2, 4):
                opts.add(self.run(style if style != "wide" else "text", width).data[:width])
            if any(len(o) != width for o in opts):
                return Skip(1, braces=False)
            return Alt(tuple(sorted(opts)), negated=False)
        first = rng.randrange(256)
        return Alt((bytes([first]), bytes([(first + rng.randrange(1, 256)) % 256])), negated=True)

    def pattern(
        self,
        target: int,
        min_bits: float,
        plain: bool = False,
        style: str | None = None,
        length: int | None = None,
    ) -> Pattern:
        """A whole pattern; ``plain`` (for ``i``/``w`` modifiers) means one fixed run only."""
        rng = self.rng
        style = style or self.style(target)
        n = length or self.length()
        if plain:
            return Pattern([[self.run_with_bits(style, n, min_bits)]])
        nparts = 1
        if n >= 12 and rng.random() < 0.3:
            nparts = rng.choice((2, 2, 2, 3, 3, 4))
        per_bits = max(min_bits / nparts, MIN_PART_BITS) if min_bits else 0.0
        wild = rng.random() < 0.35  # share of patterns with any in-part wildcard
        parts = [self.part(style, max(4, n // nparts), not wild, per_bits) for _ in range(nparts)]
        gaps = [self.gap() for _ in range(nparts - 1)]
        return Pattern(parts, gaps)

    def run_with_bits(self, style: str, n: int, min_bits: float) -> Fixed:
        fx = self.run(style, n)
        while fx.bits < min_bits:
            fx = self.run(style, len(fx.data) + 8)
        return fx

    def gap(self) -> Gap:
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            return Gap(0, None)
        lo = rng.choice((0, 1, 2, 4, 8, 10, 16, 32, 100))
        if r < 0.9:
            return Gap(lo, lo + rng.choice((4, 8, 16, 50, 100, 300, 1000)))
        if r < 0.95:
            return Gap(max(lo, 1), None)
        return Gap(0, rng.choice((8, 16, 64, 256)))


def merge_fixed(elems: list[Element]) -> list[Element]:
    """Join adjacent fixed runs (a pattern reads the same either way)."""
    out: list[Element] = []
    for e in elems:
        last = out[-1] if out else None
        if isinstance(e, Fixed) and isinstance(last, Fixed):
            out[-1] = Fixed(last.data + e.data, last.bits + e.bits)
        else:
            out.append(e)
    return out


# ---------------------------------------------------------------------------- signatures


class Namer:
    """Official-looking unique names: ``Platform.Category.Family-<id>-<rev>``."""

    def __init__(self, rng: random.Random, first_id: int) -> None:
        self.rng = rng
        self.next_id = first_id

    def name(self, target: int) -> str:
        rng = self.rng
        self.next_id += 1
        plat = rng.choice(PLATFORMS.get(target, PLATFORMS[0]))
        return (
            f"{plat}.{rng.choice(CATEGORIES)}.{rng.choice(FAMILIES)}"
            f"-{self.next_id}-{rng.choice((0, 0, 0, 1, 2))}"
        )


NDB_TARGETS = ((1, 43), (7, 19), (2, 16), (6, 7), (0, 7), (3, 6), (10, 1), (12, 1), (9, 1))
LDB_TARGETS = ((1, 88), (2, 6), (0, 2.5), (3, 1), (7, 1), (9, 0.5), (6, 0.5), (10, 0.5))
EXE_TARGETS = (1, 6, 9)


def offset_spec(rng: random.Random, target: int, rate: float) -> str:
    """An offset (`*` most of the time) valid for ``target``."""
    if rng.random() >= rate:
        return "*"
    r = rng.random()
    if target in EXE_TARGETS and r < 0.3:
        shift = f",{rng.choice((16, 64, 256))}" if rng.random() < 0.4 else ""
        return f"EP+{rng.randrange(0, 64)}{shift}" if rng.random() < 0.9 else "EP-4"
    if target == 1 and r < 0.4:
        sect = rng.choice(("S0", "S1", "S1", "SL"))
        return f"{sect}+{rng.randrange(0, 512)}"
    if r < 0.85:
        base = rng.choice((0, 0, 0, 2, 4, 16, 64, 128, 512, 1024))
        return f"{base},{rng.choice((16, 64, 256))}" if rng.random() < 0.15 else str(base)
    n = rng.choice((64, 128, 512, 4096))
    return f"EOF-{n}" + (f",{rng.choice((16, 64))}" if rng.random() < 0.5 else "")


def ndb_line(rng: random.Random, pb: PatternBuilder, namer: Namer) -> str:
    target = rng.choices([t for t, _ in NDB_TARGETS], [w for _, w in NDB_TARGETS])[0]
    pat = pb.pattern(target, MIN_BITS)
    off = offset_spec(rng, target, 0.14)
    line = f"{namer.name(target)}:{target}:{off}:{pat.hex()}"
    r = rng.random()
    if r < 0.02:
        line += f":{rng.choice((51, 70, 73, 81, 90))}"
    elif r < 0.03:
        line += f":{rng.choice((51, 90))}:255"
    return line


LDB_NSUBS = ((1, 4), (2, 3), (3, 42), (4, 3), (5, 40), (6, 3), (7, 1), (8, 3), (10, 0.5), (12, 0.5))
MODIFIERS = (("", 78), ("w", 12), ("i", 9.5), ("iw", 0.2), ("wa", 0.1), ("fa", 0.1), ("wi", 0.1))


def ldb_expression(rng: random.Random, n: int) -> tuple[str, set[int]]:
    """A logical expression over subsigs 0..n-1 and the subsigs that must be strong."""
    if n == 1:
        return rng.choice(("0", "0", "0", "0>1", "0>2")), {0}
    r = rng.random()
    if n >= 3 and r < 0.05:
        rest = "&".join(str(i) for i in range(2, n))
        return (f"(0|1)&({rest})" if n > 3 else "(0|1)&2"), set(range(2, n))
    if n >= 3 and r < 0.08:
        return "(" + "|".join(str(i) for i in range(n)) + f")>{rng.randint(1, 4)},2", set(range(n))
    if n >= 3 and r < 0.1:
        rest = "&".join(str(i) for i in range(2, n))
        return f"0&(1>{rng.randint(1, 3)})&{rest}", {0}
    if n == 2 and r < 0.05:
        return "0|1", {0, 1}
    expr = "&".join(str(i) for i in range(n))
    return (f"({expr})" if rng.random() < 0.03 else expr), {0}


def ldb_line(rng: random.Random, pb: PatternBuilder, namer: Namer) -> str:
    target = rng.choices([t for t, _ in LDB_TARGETS], [w for _, w in LDB_TARGETS])[0]
    n = rng.choices([k for k, _ in LDB_NSUBS], [w for _, w in LDB_NSUBS])[0]
    expr, strong = ldb_expression(rng, n)
    subs: list[str] = []
    pcres: set[int] = set()
    uses_mods = False
    for i in range(n):
        if i > 0 and i not in strong and rng.random() < 0.0047:
            subs.append(pcre_subsig(rng, pb, i, 1 in pcres))
            pcres.add(i)
            continue
        mods = rng.choices([m for m, _ in MODIFIERS], [w for _, w in MODIFIERS])[0]
        if target in (3, 7):
            mods = mods.replace("w", "")
        style = "text" if mods else None
        if target in (3, 7):
            style = "lower"
        if i not in strong and rng.random() < 0.25:
            fx = pb.bytes.common(lower=target in (3, 7))
            pat = Pattern([[fx]])
        else:
            pat = pb.pattern(target, MIN_BITS if i in strong else 0.0, bool(mods), style)
        off = offset_spec(rng, target, 0.011)
        body = pat.hex() if off == "*" else f"{off}:{pat.hex()}"
        if mods:
            uses_mods = True
            body += f"::{mods}"
        subs.append(body)
    r = rng.random()
    engine_min = 81 if uses_mods else rng.choice((51, 51, 51, 73, 81, 90, 106, 150, 200))
    tdb = f"Engine:{engine_min}-255,Target:{target}"
    if r < 0.02:
        lo = rng.choice((100, 1000, 4096, 20000))
        tdb = f"Engine:{engine_min}-255,FileSize:{lo}-{lo * rng.choice((10, 100, 1000))}"
        tdb += f",Target:{target}"
    elif r < 0.023:
        tdb = f"Engine:{engine_min}-255,Container:CL_TYPE_ZIP,Target:{target}"
    elif r < 0.024 and target == 1:
        tdb = f"Engine:{engine_min}-255,NumberOfSections:{rng.randint(1, 4)}-{rng.randint(5, 9)}"
        tdb += f",Target:{target}"
    elif r < 0.03 and not uses_mods:
        tdb = f"Target:{target}"
    return f"{namer.name(target)};{tdb};{expr};" + ";".join(subs)


def pcre_escape(text: bytes) -> str:
    return "".join(chr(c) if chr(c).isalnum() and c < 128 else f"\\x{c:02x}" for c in text)


def pcre_subsig(rng: random.Random, pb: PatternBuilder, index: int, one_is_pcre: bool) -> str:
    """``Trigger/regex/flags``: a PCRE triggered by earlier content subsigs."""
    head = pb.bytes.text(rng.randint(6, 14))
    tail = rng.choice((".php", ".exe", "/gate", "=", ".js", "?id="))
    cls = rng.choice(("[a-z0-9]{4,16}", "[0-9a-f]{8,32}", "\\d{2,6}", "[A-Za-z0-9+\\/]{16,}"))
    regex = pcre_escape(head.data) + cls + pcre_escape(tail.encode())
    trigger = "0" if index == 1 or one_is_pcre or rng.random() < 0.7 else "0&1"
    return f"{trigger}/{regex}/{rng.choice(('', '', 'i', 's', 'si'))}"


# ---------------------------------------------------------------------------- hash signatures


def hash_lines(
    rng: random.Random, kind: str, count: int, first_id: int, planted: list[str]
) -> Iterator[str]:
    """Blocks of hash lines (``.hsb``/``.hdb``: hash:size:name, ``.mdb``: size:hash:name)."""
    prefixes = [
        f"{p}.{c}.{f}"
        for p in ("Win", "Pdf", "Html", "Txt", "Doc", "Xls", "Unix", "Andr", "Osx", "Multios")
        for c in CATEGORIES
        for f in FAMILIES[:12]
    ]
    algos = HSB_ALGORITHMS if kind == "hsb" else (("md5", 16, 100),)
    names = [a for a, _, _ in algos]
    widths = {a: w for a, w, _ in algos}
    weights = [p for _, _, p in algos]
    done = 0
    while done < count:
        k = min(CHUNK, count - done)
        blob = rng.randbytes(32 * k).hex()
        pref = rng.choices(prefixes, k=k)
        algo = rng.choices(names, weights, k=k) if len(names) > 1 else names * k
        gauss = rng.gauss
        out: list[str] = []
        for i in range(k):
            digest = blob[64 * i : 64 * i + 2 * widths[algo[i]]]
            name = f"{pref[i]}-{first_id + done + i}-0"
            wildcard = rng.random() < WILDCARD_SIZE_RATE
            if kind == "mdb":
                size = "*" if wildcard else str(512 * max(1, int(math.exp(gauss(3.7, 1.5)))))
                out.append(f"{size}:{digest}:{name}")
            else:
                size = (
                    "*" if wildcard else str(min(max(int(math.exp(gauss(10.8, 1.4))), 16), 10**8))
                )
                out.append(f"{digest}:{size}:{name}")
            if wildcard or kind == "hsb":
                out[-1] += ":73"  # `*` sizes need MinFL 73; daily.hsb carries it on every line
        done += k
        if done >= count:
            out.extend(planted)
        yield "\n".join(out) + "\n"
    if count == 0 and planted:
        yield "\n".join(planted) + "\n"


# ---------------------------------------------------------------------------- planted files


@dataclass(slots=True)
class Planted:
    """A signature that must fire on exactly one corpus file, and that file's bytes."""

    name: str
    db: str
    line: str
    filename: str
    content: bytes


def build_pe(text: bytes, data: bytes) -> bytes:
    """A small valid PE32 (i386) with a .text and a .data section; EP = start of .text."""
    align = 0x200
    text = text.ljust(-(-len(text) // align) * align, b"\xcc")
    data = data.ljust(-(-len(data) // align) * align, b"\0")
    dos = bytearray(0x80)
    struct.pack_into("<2sHHHH", dos, 0, b"MZ", 0x90, 3, 0, 4)
    struct.pack_into("<HHHH", dos, 0xA, 0, 0xFFFF, 0, 0xB8)
    struct.pack_into("<H", dos, 0x18, 0x40)
    struct.pack_into("<I", dos, 0x3C, 0x80)
    stub = b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
    stub += b"This program cannot be run in DOS mode.\r\r\n$"
    dos[0x40 : 0x40 + len(stub)] = stub
    text_rva, data_rva = 0x1000, 0x1000 + -(-len(text) // 0x1000) * 0x1000
    image = data_rva + -(-len(data) // 0x1000) * 0x1000
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", 0x14C, 2, 0x5F000000, 0, 0, 0xE0, 0x0102)
    opt = struct.pack(
        "<HBB9I6H4I2H6I",
        0x10B,
        14,
        0,
        len(text),
        len(data),
        0,
        text_rva,
        text_rva,
        data_rva,
        0x400000,
        0x1000,
        align,
        6,
        0,
        0,
        0,
        6,
        0,
        0,
        image,
        align,
        0,
        2,
        0,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    )
    opt += bytes(128)
    sect = struct.pack(
        "<8sIIIIIIHHI", b".text", len(text), text_rva, len(text), align, 0, 0, 0, 0, 0x60000020
    )
    sect += struct.pack(
        "<8sIIIIIIHHI",
        b".data",
        len(data),
        data_rva,
        len(data),
        align + len(text),
        0,
        0,
        0,
        0,
        0xC0000040,
    )
    headers = bytes(dos) + coff + opt + sect
    return headers.ljust(align, b"\0") + text + data


def build_elf(code: bytes) -> tuple[bytes, int]:
    """A small ELF64 x86-64 executable; returns it and the entry point's file offset."""
    ep_off = 64 + 56
    size = ep_off + len(code)
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH", ident, 2, 0x3E, 1, 0x400000 + ep_off, 64, 0, 0, 64, 56, 1, 64, 0, 0
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, size, size, 0x1000)
    return ehdr + phdr + code, ep_off


def ascii_padding(rng: random.Random, n: int) -> bytes:
    words: list[str] = []
    size = 0
    while size < n:
        w = random_text(rng, rng.randint(2, 9))
        words.append(w + ("\n" if rng.random() < 0.1 else " "))
        size += len(words[-1])
    return "".join(words).encode()


def embed(rng: random.Random, pieces: list[bytes], size: int, text: bool = False) -> bytes:
    """Random padding of about ``size`` bytes with ``pieces`` placed in order."""
    pad = (lambda k: ascii_padding(rng, k)[:k]) if text else rng.randbytes
    gaps = sorted(rng.randrange(size) for _ in pieces)
    out = bytearray()
    prev = 0
    for g, piece in zip(gaps, pieces, strict=True):
        out += pad(g - prev) + (b" " if text else b"") + piece + (b" " if text else b"")
        prev = g
    out += pad(size - prev)
    return bytes(out)


def make_planted(rng: random.Random, count: int) -> list[Planted]:
    """``count`` planted signatures cycling through the kinds below (one file each)."""
    pb = PatternBuilder(rng)
    kinds: list[Callable[[str], Planted]] = []

    def name_of(kind: str, k: int) -> str:
        return f"Bench.Planted.{kind}-{9_000_000 + k}-0"

    def ndb_any(name: str) -> Planted:
        pat = pb.pattern(0, MIN_BITS, style="data", length=32)
        pat.parts.append([pb.bytes.data(12)])
        pat.gaps.append(Gap(4, 64))
        body = embed(rng, [pat.instance(rng)], rng.randint(2000, 40000))
        return Planted(name, "ndb", f"{name}:0:*:{pat.hex()}", "", body)

    def ndb_pe_ep(name: str) -> Planted:
        pat = Pattern([[pb.bytes.code(6), Skip(4, False), pb.bytes.code(14)]])
        text = pat.instance(rng) + pb.bytes.code(300).data
        pe = build_pe(text, b"data")
        return Planted(name, "ndb", f"{name}:1:EP+0:{pat.hex()}", ".exe", pe)

    def ndb_text(name: str) -> Planted:
        fx = pb.run_with_bits("lower", 30, MIN_BITS)
        pat = Pattern([[fx]])
        raw = fx.data.decode()
        shown = "".join(c.upper() if rng.random() < 0.3 else c for c in raw).replace(" ", " \t ")
        body = embed(rng, [shown.encode()], rng.randint(2000, 20000), text=True)
        return Planted(name, "ndb", f"{name}:7:*:{pat.hex()}", ".txt", body)

    def ldb_and(name: str) -> Planted:
        p0 = Pattern([[pb.bytes.data(16)]])
        p1 = Pattern([[pb.run_with_bits("text", 14, 20)]])
        p2 = Pattern([[pb.run_with_bits("text", 12, 20)]])
        line = f"{name};Engine:81-255,Target:0;0&1&2;{p0.hex()};{p1.hex()}::i;{p2.hex()}::w"
        pieces = [p0.instance(rng), p1.instance(rng, nocase=True), p2.instance(rng, wide=True)]
        return Planted(name, "ldb", line, "", embed(rng, pieces, rng.randint(4000, 60000)))

    def ldb_pcre(name: str) -> Planted:
        p0 = Pattern([[pb.bytes.data(16)]])
        head = "".join(rng.choices(string.ascii_letters, k=10))
        regex = f"{head}[0-9a-f]{{8,16}}\\x2ephp"
        line = f"{name};Engine:81-255,Target:0;0&1;{p0.hex()};0/{regex}/i"
        hit = flip_case(rng, head.encode()) + rng.randbytes(6).hex().encode() + b".php"
        return Planted(name, "ldb", line, "", embed(rng, [p0.instance(rng), hit], 30000))

    def ldb_count(name: str) -> Planted:
        p0 = Pattern([[pb.bytes.data(16)]])
        p1 = Pattern([[pb.bytes.code(10)]])
        line = f"{name};Engine:51-255,Target:0;0&(1>2);{p0.hex()};{p1.hex()}"
        pieces = [p0.instance(rng)] + [p1.instance(rng) for _ in range(3)]
        return Planted(name, "ldb", line, "", embed(rng, pieces, rng.randint(5000, 50000)))

    def hsb_sha256(name: str) -> Planted:
        body = rng.randbytes(rng.randint(1000, 100000))
        line = f"{hashlib.sha256(body).hexdigest()}:{len(body)}:{name}:73"
        return Planted(name, "hsb", line, "", body)

    def hdb_md5(name: str) -> Planted:
        body = ascii_padding(rng, rng.randint(1000, 50000))
        return Planted(name, "hdb", f"{hashlib.md5(body).hexdigest()}:{len(body)}:{name}", "", body)

    def mdb_section(name: str) -> Planted:
        text = pb.bytes.code(0x400).data
        pe = build_pe(text, rng.randbytes(0x200))
        line = f"{len(text)}:{hashlib.md5(text).hexdigest()}:{name}"
        return Planted(name, "mdb", line, ".exe", pe)

    def ndb_elf_ep(name: str) -> Planted:
        pat = Pattern([[pb.bytes.code(8), Nibble(4, True), pb.bytes.code(12)]])
        elf, _ = build_elf(pat.instance(rng) + pb.bytes.code(500).data)
        return Planted(name, "ndb", f"{name}:6:EP+0:{pat.hex()}", "", elf)

    def ndb_eof(name: str) -> Planted:
        alt = Alt((b"\x11", b"\x22", b"\x33"), negated=False)
        pat = Pattern([[pb.bytes.data(10), alt, pb.bytes.data(10)]])
        inst = pat.instance(rng)
        tail = rng.randbytes(64 - len(inst))
        body = rng.randbytes(rng.randint(3000, 30000)) + inst + tail
        return Planted(name, "ndb", f"{name}:0:EOF-64:{pat.hex()}", "", body)

    def ldb_pe_section(name: str) -> Planted:
        p0 = Pattern([[pb.bytes.data(16)]])
        p1 = Pattern([[pb.bytes.code(8), Skip(2, False), pb.bytes.code(12)]])
        text = pb.bytes.code(0x100).data + p1.instance(rng) + pb.bytes.code(0x100).data
        data = bytearray(rng.randbytes(0x200))
        data[16 : 16 + 16] = p0.instance(rng)
        line = f"{name};Engine:51-255,Target:1;0&1;S1+16:{p0.hex()};{p1.hex()}"
        return Planted(name, "ldb", line, ".exe", build_pe(text, bytes(data)))

    kinds = [
        ndb_any,
        ldb_and,
        hsb_sha256,
        ndb_pe_ep,
        ndb_text,
        ldb_pcre,
        hdb_md5,
        mdb_section,
        ldb_count,
        ndb_elf_ep,
        ndb_eof,
        ldb_pe_section,
    ]
    out: list[Planted] = []
    for k in range(count):
        make = kinds[k % len(kinds)]
        kind = "".join(w.title() for w in make.__name__.split("_"))
        p = make(name_of(kind, k))
        p.filename = f"planted-{k:03d}-{make.__name__}{p.filename or '.bin'}"
        out.append(p)
    return out


# ---------------------------------------------------------------------------- driver


def write_lines(path: Path, blocks: Iterator[str]) -> int:
    """Write text blocks with large buffered writes; returns the byte count."""
    size = 0
    with path.open("w", encoding="ascii", newline="\n", buffering=1 << 22) as fh:
        for block in blocks:
            fh.write(block)
            size += len(block)
    return size


def body_blocks(
    make: Callable[[random.Random, PatternBuilder, Namer], str],
    rng: random.Random,
    count: int,
    first_id: int,
    planted: list[str],
) -> Iterator[str]:
    pb = PatternBuilder(rng)
    namer = Namer(rng, first_id)
    done = 0
    while done < count:
        k = min(CHUNK // 10, count - done)
        lines = [make(rng, pb, namer) for _ in range(k)]
        done += k
        if done >= count:
            lines.extend(planted)
        yield "\n".join(lines) + "\n"
    if count == 0 and planted:
        yield "\n".join(planted) + "\n"


def generate(out: Path, scale: float, seed: int, plant: int) -> dict[str, Any]:
    """Write the database files, ``planted.json`` and ``manifest.json`` into ``out``."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    planted = make_planted(random.Random(f"{seed}-planted"), plant)
    counts = {kind: round(n * scale) for kind, n in FULL_COUNTS.items()}
    sizes: dict[str, int] = {}
    for i, (kind, n) in enumerate(counts.items()):
        rng = random.Random(f"{seed}-{kind}")
        mine = [p.line for p in planted if p.db == kind]
        first_id = 10_000_000 * (i + 1)
        if kind in ("hsb", "hdb", "mdb"):
            blocks = hash_lines(rng, kind, n, first_id, mine)
        else:
            blocks = body_blocks(ndb_line if kind == "ndb" else ldb_line, rng, n, first_id, mine)
        sizes[f"bench.{kind}"] = write_lines(out / f"bench.{kind}", blocks)
        counts[kind] = n + len(mine)
    planted_doc = [
        {
            "name": p.name,
            "report": f"{p.name}.UNOFFICIAL",
            "db": f"bench.{p.db}",
            "line": p.line,
            "file": p.filename,
            "size": len(p.content),
            "sha256": hashlib.sha256(p.content).hexdigest(),
            "content_b64": base64.b64encode(p.content).decode(),
        }
        for p in planted
    ]
    (out / "planted.json").write_text(json.dumps(planted_doc, indent=1) + "\n")
    manifest: dict[str, Any] = {
        "scale": scale,
        "seed": seed,
        "plant": plant,
        "signatures": counts,
        "total_signatures": sum(counts.values()),
        "bytes": sizes,
        "planted": [p.name for p in planted],
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.01, help="1.0 = the official DB's shape")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plant", type=int, default=12, help="signatures that match corpus files")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    args = ap.parse_args(argv)
    manifest = generate(args.out, args.scale, args.seed, args.plant)
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
