"""Parsed signatures as small frozen values; the parsers produce them, the matcher compiles them."""

from __future__ import annotations

from dataclasses import dataclass, field

from vigil.engine.signatures.pattern import Offset, Pattern

__all__ = [
    "FLEVEL",
    "BodySig",
    "ByteCompareSub",
    "CdbSig",
    "ContentSub",
    "Expr",
    "HashSig",
    "LogicalSig",
    "MacroSub",
    "PcreSub",
    "SubSig",
    "Tdb",
    "fl_window_ok",
]

# Every class pickles as a call of its constructor (``__reduce__``): the default of a slots
# dataclass walks ``dataclasses.fields`` for each object, which made writing the hundreds
# of thousands of signatures of a compiled cache several times slower.

# The functionality level Vigil claims: clamscan 1.4.6 runs at 216 (signatures.md §0, §11),
# so MinFL/MaxFL/Engine windows are judged against it to give the same verdicts.
FLEVEL = 216


def fl_window_ok(minfl: int | None, maxfl: int | None, flevel: int = FLEVEL) -> bool:
    """True when a signature's functionality-level window admits this engine."""
    if minfl is not None and minfl > flevel:
        return False
    return not (maxfl is not None and maxfl < flevel)


@dataclass(frozen=True, slots=True)
class HashSig:
    """A whole-file, PE-section or import hash signature (size None = any size)."""

    kind: str  # "file", "section", "import", "fp"
    digest: bytes
    size: int | None
    name: str

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (HashSig, (self.kind, self.digest, self.size, self.name))


@dataclass(frozen=True, slots=True)
class BodySig:
    """An .ndb/.db body signature."""

    name: str
    target: int
    offset: Offset
    pattern: Pattern
    text: str

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (BodySig, (self.name, self.target, self.offset, self.pattern, self.text))


@dataclass(frozen=True, slots=True)
class Expr:
    """A node of a logical expression (§4.3).

    A leaf has ``index`` >= 0; a group has ``children`` joined by ``ops``. ``mod`` is one of
    "", "=", ">", "<" with thresholds ``x`` and ``y`` (y = -1 when absent).
    """

    index: int = -1
    children: tuple[Expr, ...] = ()
    ops: tuple[str, ...] = ()
    mod: str = ""
    x: int = 0
    y: int = -1

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Expr, (self.index, self.children, self.ops, self.mod, self.x, self.y))


@dataclass(frozen=True, slots=True)
class ContentSub:
    """A hex content subsignature with its offset and modifiers (``i w f a``)."""

    offset: Offset
    pattern: Pattern
    modifiers: str = ""

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (ContentSub, (self.offset, self.pattern, self.modifiers))


@dataclass(frozen=True, slots=True)
class PcreSub:
    """A PCRE subsignature: run ``regex`` once ``trigger`` holds (§4.6)."""

    offset: Offset
    trigger: Expr
    regex: str
    flags: str

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (PcreSub, (self.offset, self.trigger, self.regex, self.flags))


@dataclass(frozen=True, slots=True)
class ByteCompareSub:
    """Read a number near subsignature ``ref``'s match and compare it (§4.5)."""

    ref: int
    delta: int  # signed offset from the start of ref's match
    base: str  # "h", "d", "a" or "i"
    little: bool
    exact: bool
    count: int
    comparisons: tuple[tuple[str, int], ...]

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (
            ByteCompareSub,
            (
                self.ref,
                self.delta,
                self.base,
                self.little,
                self.exact,
                self.count,
                self.comparisons,
            ),
        )


@dataclass(frozen=True, slots=True)
class MacroSub:
    """``${min-max}G$``: a group-G .ndb pattern starting min..max bytes after the previous."""

    lo: int
    hi: int
    group: int

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (MacroSub, (self.lo, self.hi, self.group))


SubSig = ContentSub | PcreSub | ByteCompareSub | MacroSub


@dataclass(frozen=True, slots=True)
class Tdb:
    """A logical signature's target description block (§4.2)."""

    target: int
    engine: tuple[int, int] | None = None
    file_size: tuple[int, int] | None = None
    entry_point: tuple[int, int] | None = None
    sections: tuple[int, int] | None = None
    container: str | None = None
    intermediates: tuple[str, ...] = ()
    icon_groups: tuple[str, ...] = ()
    handler_type: str | None = None

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (
            Tdb,
            (
                self.target,
                self.engine,
                self.file_size,
                self.entry_point,
                self.sections,
                self.container,
                self.intermediates,
                self.icon_groups,
                self.handler_type,
            ),
        )


@dataclass(frozen=True, slots=True)
class LogicalSig:
    """An .ldb logical signature."""

    name: str
    tdb: Tdb
    expr: Expr
    subsigs: tuple[SubSig, ...]
    caps: tuple[int, ...] = field(default=())  # how many hits of each subsig can matter

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (LogicalSig, (self.name, self.tdb, self.expr, self.subsigs, self.caps))


@dataclass(frozen=True, slots=True)
class CdbSig:
    """A .cdb container-metadata signature (applied by the container layer)."""

    name: str
    container_type: str | None
    container_size: tuple[int, int] | None
    name_regex: str | None
    size_in_container: tuple[int, int] | None
    size_real: tuple[int, int] | None
    encrypted: int | None
    file_pos: tuple[int, int] | None

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (
            CdbSig,
            (
                self.name,
                self.container_type,
                self.container_size,
                self.name_regex,
                self.size_in_container,
                self.size_real,
                self.encrypted,
                self.file_pos,
            ),
        )
