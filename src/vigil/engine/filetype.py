"""File typing: ClamAV's CL_TYPE names, magic rules and the first-KiB classification.

Imports only the standard library, numpy and (lazily) the .ftm parser for the built-in table.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

__all__ = [
    "FileType",
    "MagicRule",
    "TARGET_TYPES",
    "TYPE_CODES",
    "HEAD_SIZE",
    "builtin_rules",
    "detect_type",
    "outranks",
    "parse_cl_type",
    "text_or_binary",
    "utf16_to_ascii",
]

# ClamAV types a file from this many leading bytes (CL_FILE_MBUFF_SIZE).
HEAD_SIZE = 1024
# The window ClamAV re-maps when it looks further into a ZIP (MAGIC_BUFFER_SIZE).
_REMAP_SIZE = 1028


class FileType(enum.Enum):
    """Every name ClamAV 1.4's ``cli_ftcode`` accepts, in ClamAV's enum order (see TYPE_CODES)."""

    ANY = "CL_TYPE_ANY"
    TEXT_ASCII = "CL_TYPE_TEXT_ASCII"
    TEXT_UTF8 = "CL_TYPE_TEXT_UTF8"
    TEXT_UTF16LE = "CL_TYPE_TEXT_UTF16LE"
    TEXT_UTF16BE = "CL_TYPE_TEXT_UTF16BE"
    BINARY_DATA = "CL_TYPE_BINARY_DATA"
    MSEXE = "CL_TYPE_MSEXE"
    ELF = "CL_TYPE_ELF"
    MACHO = "CL_TYPE_MACHO"
    MACHO_UNIBIN = "CL_TYPE_MACHO_UNIBIN"
    POSIX_TAR = "CL_TYPE_POSIX_TAR"
    OLD_TAR = "CL_TYPE_OLD_TAR"
    CPIO_OLD = "CL_TYPE_CPIO_OLD"
    CPIO_ODC = "CL_TYPE_CPIO_ODC"
    CPIO_NEWC = "CL_TYPE_CPIO_NEWC"
    CPIO_CRC = "CL_TYPE_CPIO_CRC"
    GZ = "CL_TYPE_GZ"
    ZIP = "CL_TYPE_ZIP"
    BZ = "CL_TYPE_BZ"
    RAR = "CL_TYPE_RAR"
    ARJ = "CL_TYPE_ARJ"
    MSSZDD = "CL_TYPE_MSSZDD"
    MSOLE2 = "CL_TYPE_MSOLE2"
    MSCAB = "CL_TYPE_MSCAB"
    MSCHM = "CL_TYPE_MSCHM"
    SIS = "CL_TYPE_SIS"
    SCRENC = "CL_TYPE_SCRENC"
    GRAPHICS = "CL_TYPE_GRAPHICS"
    GIF = "CL_TYPE_GIF"
    PNG = "CL_TYPE_PNG"
    JPEG = "CL_TYPE_JPEG"
    TIFF = "CL_TYPE_TIFF"
    RIFF = "CL_TYPE_RIFF"
    BINHEX = "CL_TYPE_BINHEX"
    TNEF = "CL_TYPE_TNEF"
    CRYPTFF = "CL_TYPE_CRYPTFF"
    PDF = "CL_TYPE_PDF"
    UUENCODED = "CL_TYPE_UUENCODED"
    SCRIPT = "CL_TYPE_SCRIPT"
    HTML_UTF16 = "CL_TYPE_HTML_UTF16"
    RTF = "CL_TYPE_RTF"
    SEVEN_Z = "CL_TYPE_7Z"
    SWF = "CL_TYPE_SWF"
    JAVA = "CL_TYPE_JAVA"
    XAR = "CL_TYPE_XAR"
    XZ = "CL_TYPE_XZ"
    OOXML_WORD = "CL_TYPE_OOXML_WORD"
    OOXML_PPT = "CL_TYPE_OOXML_PPT"
    OOXML_XL = "CL_TYPE_OOXML_XL"
    INTERNAL = "CL_TYPE_INTERNAL"
    HWP3 = "CL_TYPE_HWP3"
    OOXML_HWP = "CL_TYPE_OOXML_HWP"
    PS = "CL_TYPE_PS"
    EGG = "CL_TYPE_EGG"
    ONENOTE = "CL_TYPE_ONENOTE"
    PYTHON_COMPILED = "CL_TYPE_PYTHON_COMPILED"
    LHA_LZH = "CL_TYPE_LHA_LZH"
    PART_ANY = "CL_TYPE_PART_ANY"
    PART_HFSPLUS = "CL_TYPE_PART_HFSPLUS"
    MBR = "CL_TYPE_MBR"
    HTML = "CL_TYPE_HTML"
    MAIL = "CL_TYPE_MAIL"
    SFX = "CL_TYPE_SFX"
    ZIPSFX = "CL_TYPE_ZIPSFX"
    RARSFX = "CL_TYPE_RARSFX"
    SEVEN_ZSFX = "CL_TYPE_7ZSFX"
    CABSFX = "CL_TYPE_CABSFX"
    ARJSFX = "CL_TYPE_ARJSFX"
    EGGSFX = "CL_TYPE_EGGSFX"
    NULSFT = "CL_TYPE_NULSFT"
    AUTOIT = "CL_TYPE_AUTOIT"
    ISHIELD_MSI = "CL_TYPE_ISHIELD_MSI"
    ISO9660 = "CL_TYPE_ISO9660"
    DMG = "CL_TYPE_DMG"
    GPT = "CL_TYPE_GPT"
    APM = "CL_TYPE_APM"
    XDP = "CL_TYPE_XDP"
    XML_WORD = "CL_TYPE_XML_WORD"
    XML_XL = "CL_TYPE_XML_XL"
    XML_HWP = "CL_TYPE_XML_HWP"
    HWPOLE2 = "CL_TYPE_HWPOLE2"
    MHTML = "CL_TYPE_MHTML"
    LNK = "CL_TYPE_LNK"
    UDF = "CL_TYPE_UDF"
    ALZ = "CL_TYPE_ALZ"
    IGNORED = "CL_TYPE_IGNORED"


def _type_codes() -> dict[FileType, int]:
    # ClamAV numbers ANY 0 and the rest from 500 (CL_TYPENO) in enum order; two internal
    # members that no database may name (CL_TYPE_ERROR after BINARY_DATA, CL_TYPE_OTHER
    # before IGNORED) still take a number, so they are skipped here, not dropped.
    codes: dict[FileType, int] = {FileType.ANY: 0}
    code = 500
    for ft in list(FileType)[1:]:
        if ft in (FileType.MSEXE, FileType.IGNORED):
            code += 1
        codes[ft] = code
        code += 1
    return codes


# The numeric cli_file_t value of each type. File-type body patterns (.ftm type 1) use it as a
# priority: "bigger numbers have higher priority" (see ``outranks``).
TYPE_CODES: dict[FileType, int] = _type_codes()

# Which target set (signatures.md §3.2) the objects of a type are matched against besides the
# generic set 0; types not listed use target 0 only. 14 is ClamAV's "other" pass for
# BINARY_DATA and PYTHON_COMPILED (scanners.c routes only those two to CL_TYPE_OTHER in 1.4).
TARGET_TYPES: dict[FileType, int] = {
    FileType.MSEXE: 1,
    FileType.MSOLE2: 2,
    FileType.HTML: 3,
    FileType.MAIL: 4,
    FileType.GRAPHICS: 5,
    FileType.GIF: 5,
    FileType.PNG: 5,
    FileType.JPEG: 5,
    FileType.TIFF: 5,
    FileType.ELF: 6,
    FileType.TEXT_ASCII: 7,
    FileType.MACHO: 9,
    FileType.MACHO_UNIBIN: 9,
    FileType.PDF: 10,
    FileType.SWF: 11,
    FileType.JAVA: 12,
    FileType.INTERNAL: 13,
    FileType.BINARY_DATA: 14,
    FileType.PYTHON_COMPILED: 14,
}

_BY_NAME = {ft.value: ft for ft in FileType}


def parse_cl_type(name: str) -> FileType:
    """The FileType for an exact ``CL_TYPE_*`` name; ValueError for anything else."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown file type {name!r}") from None


def outranks(candidate: FileType, current: FileType | None) -> bool:
    """Whether a matching type-1 rule's result replaces the type found so far.

    ClamAV's rule (matcher-ac.c): a higher code wins, and SFX-class types (code >= SFX) and
    MSEXE always win, so later embedded-object hits are recorded too.
    """
    code = TYPE_CODES[candidate]
    return (
        current is None
        or code > TYPE_CODES[current]
        or code >= TYPE_CODES[FileType.SFX]
        or candidate is FileType.MSEXE
    )


@dataclass(frozen=True, slots=True)
class MagicRule:
    """One .ftm line (§1.8): ``magic`` is hex for types 0/4, a body signature for type 1.

    ``offset`` stays text because type 1 uses the full offset grammar (§3.1); ``raw`` is
    the decoded magic of a type 0/4 rule (None for type 1).
    """

    magic_type: int
    offset: str
    magic: str
    description: str
    required: FileType
    result: FileType
    raw: bytes | None = field(default=None, init=False, repr=False, compare=False)
    position: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.magic_type in (0, 4):
            # The parser has checked both; an ill-formed rule built by hand simply never
            # matches (raw stays None).
            try:
                raw = bytes.fromhex(self.magic)
                pos = int(self.offset) if self.offset else 0
            except ValueError:
                return
            object.__setattr__(self, "raw", raw)
            object.__setattr__(self, "position", pos)


# --------------------------------------------------------------------------- text detection

# textdet.c classes for the 128 ASCII codes: T = plain text, F = never in text. Every byte
# >= 0x80 counts as text for the ASCII test (ISO-8859 and "extended ASCII").
_NOT_TEXT = bytes([*range(0x00, 0x07), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_NOT_TEXT_RE = re.compile(b"[" + re.escape(_NOT_TEXT) + b"]")
_TEXT_LUT = np.ones(128, dtype=bool)
_TEXT_LUT[np.frombuffer(_NOT_TEXT, dtype=np.uint8)] = False


def _utf16_kind(buf: bytes) -> FileType | None:
    """ClamAV's td_isutf16: a UTF-16 guess, big-endian unless a little-endian BOM says so.

    The first two bytes are never examined as text; without a BOM a single code unit below
    0x80 that is not plain text rules UTF-16 out, with a BOM up to half may be.
    """
    n = len(buf)
    if n < 2:
        return None
    little = buf[0] == 0xFF and buf[1] == 0xFE
    has_bom = little or (buf[0] == 0xFE and buf[1] == 0xFF)
    pairs = (n - 2) // 2
    units = np.frombuffer(buf, dtype="<u2" if little else ">u2", count=pairs, offset=2)
    if bool((units == 0xFFFE).any()):
        return None
    low = units[units < 128]
    bad = int(np.count_nonzero(~_TEXT_LUT[low]))
    if bad and not has_bom:
        return None
    if has_bom and bad >= n // 2:
        return None
    return FileType.TEXT_UTF16LE if little else FileType.TEXT_UTF16BE


def text_or_binary(head: bytes) -> FileType:
    """Classify bytes as ClamAV's textdet does: TEXT_ASCII, TEXT_UTF16LE/BE or BINARY_DATA.

    ClamAV's ASCII test accepts every byte >= 0x80, and each byte its UTF-8 test rejects is
    also rejected by the ASCII test, so TEXT_UTF8 never results (as in ClamAV 1.4).
    """
    if _NOT_TEXT_RE.search(head) is None:
        return FileType.TEXT_ASCII
    return _utf16_kind(head) or FileType.BINARY_DATA


def utf16_to_ascii(head: bytes) -> bytes:
    """ClamAV's cli_utf16toascii, used to look for HTML in UTF-16 text (-> HTML_UTF16).

    Each 16-bit unit becomes ``(high << 4) + low`` modulo 256, which is the low byte for
    UTF-16LE ASCII and noise otherwise; ClamAV then runs the type-1 rules over the result.
    """
    n = len(head) & ~1
    if n < 2:
        return b""
    pairs = np.frombuffer(head, dtype=np.uint8, count=n).reshape(-1, 2)
    mixed = (pairs[:, 1].astype(np.uint16) << 4) + pairs[:, 0]
    return (mixed & 0xFF).astype(np.uint8).tobytes()


# --------------------------------------------------------------------------- tar and OOXML

_TAR_SPACE = re.compile(rb"[ \t\n\x0b\x0c\r]*")
_OCTAL = re.compile(rb"[0-7]*")
_SPACE_OR_NUL = frozenset(b" \t\n\x0b\x0c\r\x00")


def _tar_checksum_field(field_: bytes) -> int:
    """is_tar.c's from_oct(8, ...): -1 for an all-blank or non-octal field."""
    skip = _TAR_SPACE.match(field_)
    start = skip.end() if skip else 0
    if start >= len(field_):
        return -1
    m = _OCTAL.match(field_, start)
    digits = m.group() if m else b""
    end = start + len(digits)
    if end < len(field_) and field_[end] not in _SPACE_OR_NUL:
        return -1
    return int(digits, 8) if digits else 0


def _tar_kind(buf: bytes) -> FileType | None:
    """ClamAV's is_tar: a 512-byte header whose checksum field adds up."""
    if len(buf) < 512:
        return None
    header = buf[:512]
    recsum = _tar_checksum_field(header[148:156])
    total = sum(header) - sum(header[148:156]) + 8 * 0x20
    if total != recsum:
        return None
    if header[257:265] == b"ustar  \x00":
        return FileType.POSIX_TAR
    return FileType.OLD_TAR


_LOCAL_HEADER = b"PK\x03\x04"
_LOCAL_HEADER_SIZE = 30
_OOXML_NAME_MAX = 22
# Entry names at the start of a local header's name field. A name naming a known OOXML/HWP
# part decides the type at once; the others only make an OOXML document "likely".
_OOXML_NAMES: tuple[tuple[bytes, FileType], ...] = (
    (b"xl/", FileType.OOXML_XL),
    (b"ppt/", FileType.OOXML_PPT),
    (b"word/", FileType.OOXML_WORD),
    (b"BinData", FileType.ZIP),
    (b"mimetype", FileType.ZIP),
    (b"Contents", FileType.ZIP),
    (b"docProps/", FileType.ZIP),
    (b"customXml/", FileType.ZIP),
    (b"version.xml", FileType.ZIP),
    (b"settings.xml", FileType.ZIP),
    (b"_.rels/.rels", FileType.ZIP),
    (b"[ContentTypes].xml", FileType.ZIP),
    (b"[Content_Types].xml", FileType.ZIP),
    (b"Preview/PrvText.txt", FileType.ZIP),
    (b"Contents/content.hpf", FileType.OOXML_HWP),
    (b"META-INF/container.xml", FileType.ZIP),
)


def _ooxml_kind(data: bytes) -> FileType | None:
    """ClamAV's quick OOXML check on the first local headers of a ZIP.

    Looks at up to three local-header names (ClamAV re-maps 1028-byte windows over the whole
    file; this does the same within ``data``). ClamAV's deeper central-directory check for
    documents that are only "likely" OOXML is not done: those stay ZIP.
    """
    start, window = 0, data[:HEAD_SIZE]
    pos = 0
    seen = 0
    for _ in range(32):
        hit = window.find(_LOCAL_HEADER, pos)
        if hit >= 0:
            pos = hit + _LOCAL_HEADER_SIZE
            if len(window) - pos > _OOXML_NAME_MAX:
                for name, kind in _OOXML_NAMES:
                    if kind is not FileType.ZIP and window.startswith(name, pos):
                        return kind
                seen += 1
                if seen > 2:
                    return None
                continue
        consumed = start + len(window)
        if len(data) - consumed <= _LOCAL_HEADER_SIZE:
            return None
        # Step back so that a header straddling the window edge is seen whole.
        start = consumed - (_LOCAL_HEADER_SIZE + _OOXML_NAME_MAX + 1)
        window = data[start : start + _REMAP_SIZE]
        pos = 0
    return None


# --------------------------------------------------------------------------- typing


class _RuleIndex:
    """Type-0 rules keyed by (position, first byte): typing an object looks at a handful
    of rules instead of trying every one in turn; the first rule in list order still wins."""

    def __init__(self, rules: Sequence[MagicRule]) -> None:
        self.rules = rules
        self.by_key: dict[tuple[int, int], list[int]] = {}
        self.empty: list[int] = []  # rules whose magic is empty match wherever they fit
        for i, rule in enumerate(rules):
            if rule.magic_type != 0 or rule.raw is None:
                continue
            if rule.raw:
                self.by_key.setdefault((rule.position, rule.raw[0]), []).append(i)
            else:
                self.empty.append(i)
        self.positions = sorted({pos for pos, _ in self.by_key})

    def first(self, buf: bytes) -> FileType | None:
        rules = self.rules
        size = len(buf)
        best: int | None = None
        for i in self.empty:
            if rules[i].position <= size:
                best = i
                break
        for pos in self.positions:
            if pos >= size:
                break
            for i in self.by_key.get((pos, buf[pos]), ()):
                if best is not None and i >= best:
                    break
                rule = rules[i]
                raw = rule.raw
                assert raw is not None
                if pos + len(raw) <= size and buf.startswith(raw, pos):
                    best = i
                    break
        return None if best is None else rules[best].result


_INDEXES: dict[int, _RuleIndex] = {}


def _rule_index(rules: Sequence[MagicRule]) -> _RuleIndex:
    """The index of a rule list, built once per list (an engine keeps its list)."""
    index = _INDEXES.get(id(rules))
    if index is None or index.rules is not rules:
        if len(_INDEXES) >= 16:
            _INDEXES.clear()
        index = _INDEXES[id(rules)] = _RuleIndex(rules)
    return index


def detect_type(head: bytes, rules: Sequence[MagicRule]) -> FileType:
    """Type an object from its first bytes as ClamAV's cli_determine_fmap_type does.

    ``rules`` is newest-first; the first type-0 rule whose bytes sit at its offset within the
    first 1024 bytes wins. ClamAV keeps no RequiredType for type-0 rules, so none is
    consulted. Failing that, textdet decides (ASCII / UTF-16 / binary) and binary data with
    a valid tar header checksum becomes OLD_TAR or POSIX_TAR; a ZIP whose first entries
    name OOXML parts becomes OOXML_*. Type-1 rules (HTML, mail, SFX, ...) are the body
    matcher's job: run them over the same first KiB for TEXT_* and BINARY_DATA results.
    """
    buf = head[:HEAD_SIZE]
    found = _rule_index(rules).first(buf)
    if found is None:
        found = text_or_binary(buf)
    if found is FileType.BINARY_DATA:
        return _tar_kind(buf) or found
    if found is FileType.ZIP and len(buf) > 2 * (_LOCAL_HEADER_SIZE + 5):
        return _ooxml_kind(head) or found
    return found


@functools.cache
def builtin_rules() -> list[MagicRule]:
    """Vigil's built-in magic table (data/builtin.ftm), used when no .ftm database loads.

    Parsed at FLEVEL 216 like clamscan 1.4.6, newest-first. Callers must not mutate it.
    """
    from vigil.engine.signatures.ftm import parse_ftm

    text = resources.files("vigil").joinpath("data", "builtin.ftm").read_text("ascii")
    return parse_ftm(text.splitlines(), "builtin.ftm")
