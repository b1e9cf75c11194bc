"""Logical signatures (.ldb/.ldu): target block, expression and subsignatures (§4)."""

from __future__ import annotations

from functools import lru_cache

from vigil.engine.signatures.common import (
    BATCH_SIGS,
    Batch,
    SkipSig,
    final_name,
    hand_over,
    is_number,
    iter_lines,
)
from vigil.engine.signatures.model import (
    FLEVEL,
    ByteCompareSub,
    ContentSub,
    Expr,
    LogicalSig,
    MacroSub,
    PcreSub,
    SubSig,
    Tdb,
)
from vigil.engine.signatures.ndb import EXE_TARGETS, MAX_TARGET
from vigil.engine.signatures.pattern import (
    ANY_OFFSET,
    Part,
    Pattern,
    PatternError,
    parse_checked,
    parse_offset,
)
from vigil.errors import SignatureError

__all__ = ["parse_ldb", "parse_expr", "split_ldb", "expr_caps", "expr_indexes"]

MAX_SUBSIGS = 64
MAX_TDB_ITEMS = 10
MODIFIERS = frozenset("iwfa")
PCRE_FLAGS = frozenset("grecismxAEU")
KNOWN_TDB = frozenset(
    {
        "Engine",
        "Target",
        "FileSize",
        "EntryPoint",
        "NumberOfSections",
        "Container",
        "Intermediates",
        "IconGroup1",
        "IconGroup2",
        "HandlerType",
    }
)


def split_ldb(line: str) -> list[str]:
    """Split on ';' but not inside a PCRE ``/.../`` (an escaped slash does not toggle)."""
    if "/" not in line:
        return line.split(";")
    fields: list[str] = []
    cur: list[str] = []
    in_re = False
    prev = ""
    for c in line:
        if c == "/" and prev != "\\":
            in_re = not in_re
        if c == ";" and not in_re:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        prev = c
    fields.append("".join(cur))
    return fields


# ------------------------------------------------------------------------ expressions


class _ExprParser:
    def __init__(self, text: str) -> None:
        self.s = text.replace(" ", "")
        self.i = 0

    def number(self) -> int:
        j = self.i
        while j < len(self.s) and is_number(self.s[j]):
            j += 1
        if j == self.i:
            raise ValueError(f"logical expression: number expected at {self.i} in {self.s!r}")
        n = int(self.s[self.i : j])
        self.i = j
        return n

    def modifier(self) -> tuple[str, int, int]:
        if self.i < len(self.s) and self.s[self.i] in "=<>":
            op = self.s[self.i]
            self.i += 1
            if op == "=" and self.s[self.i : self.i + 1] == "=":
                self.i += 1  # ClamAV reads '==' as '=' (seen in main.ldb, checked on 1.4.6)
            x = self.number()
            y = -1
            if self.i < len(self.s) and self.s[self.i] == ",":
                self.i += 1
                if self.i < len(self.s) and is_number(self.s[self.i]):
                    y = self.number()
            return op, x, y
        return "", 0, -1

    def term(self) -> Expr:
        if self.i < len(self.s) and self.s[self.i] == "(":
            self.i += 1
            inner = self.expr()
            if self.i >= len(self.s) or self.s[self.i] != ")":
                raise ValueError(f"logical expression: missing ')' in {self.s!r}")
            self.i += 1
            op, x, y = self.modifier()
            if not op:
                return inner
            if inner.index >= 0 or inner.mod:
                inner = Expr(children=(inner,), ops=())
            return Expr(children=inner.children, ops=inner.ops, mod=op, x=x, y=y)
        idx = self.number()
        op, x, y = self.modifier()
        return Expr(index=idx, mod=op, x=x, y=y)

    def expr(self) -> Expr:
        children = [self.term()]
        ops: list[str] = []
        while self.i < len(self.s) and self.s[self.i] in "&|":
            ops.append(self.s[self.i])
            self.i += 1
            children.append(self.term())
        if len(children) == 1:
            return children[0]
        return Expr(children=tuple(children), ops=tuple(ops))

    def parse(self) -> Expr:
        if not self.s:
            raise ValueError("empty logical expression")
        e = self.expr()
        if self.i != len(self.s):
            raise ValueError(f"logical expression: unexpected {self.s[self.i]!r} in {self.s!r}")
        return e


MAX_EXPR_DEPTH = 64


@lru_cache(maxsize=1 << 14)
def parse_expr(text: str) -> Expr:
    """Parse a logical expression such as ``((0|1|2)>5,2)&(3|1)``.

    Cached: a database repeats a few thousand expressions over 150 k signatures, and an
    Expr is immutable, so signatures may share one.
    """
    depth = 0
    for c in text:  # bounded nesting keeps the recursive parser far from Python's limit
        depth += (c == "(") - (c == ")")
        if depth > MAX_EXPR_DEPTH:
            raise ValueError(f"logical expression nested deeper than {MAX_EXPR_DEPTH}")
    return _ExprParser(text).parse()


def expr_indexes(e: Expr) -> set[int]:
    """Every subsignature index the expression names."""
    if e.index >= 0:
        return {e.index}
    out: set[int] = set()
    for c in e.children:
        out |= expr_indexes(c)
    return out


ALL_HITS = 1 << 30  # the cap of a subsignature whose every hit matters


def expr_caps(e: Expr, n: int) -> tuple[int, ...]:
    """How many distinct hits of each subsignature can change the expression's value."""
    caps = [1] * n

    def walk(node: Expr, outer: int) -> None:
        need = outer
        if node.mod:
            need = max(need, node.x + 1)
        if node.index >= 0:
            if node.index < n:
                caps[node.index] = max(caps[node.index], need)
            return
        for c in node.children:
            walk(c, need)

    walk(e, 1)
    return tuple(caps)


# ------------------------------------------------------------------------ target block


def _range(value: str, key: str) -> tuple[int, int]:
    lo, sep, hi = value.partition("-")
    if not sep or not is_number(lo) or not is_number(hi):
        raise ValueError(f"{key}: expected min-max, got {value!r}")
    return int(lo), int(hi)


@lru_cache(maxsize=1 << 12)
def parse_tdb(text: str) -> Tdb:
    """Parse the target description block; raises SkipSig for signatures ClamAV skips.

    Cached as parse_expr is (a handful of distinct blocks, immutable results).
    """
    items = text.split(",")
    if len(items) > MAX_TDB_ITEMS:
        raise ValueError("too many target description items")
    values: dict[str, str] = {}
    for pos, item in enumerate(items):
        key, sep, value = item.partition(":")
        if not sep:
            raise ValueError(f"bad target description item {item!r}")
        if key == "Engine" and pos != 0:
            raise ValueError("Engine must be the first target description item")
        if key not in KNOWN_TDB:
            raise SkipSig(f"unknown target description key {key!r}")
        values[key] = value
    engine = _range(values["Engine"], "Engine") if "Engine" in values else None
    if engine is not None and not engine[0] <= FLEVEL <= engine[1]:
        raise SkipSig("engine functionality level out of range")
    if "Target" not in values:
        raise ValueError("missing Target")
    target_text = values["Target"]
    if not is_number(target_text):
        raise ValueError(f"bad Target {target_text!r}")
    target = int(target_text)
    extra = set(values) - {"Engine", "Target"}
    if extra and (engine is None or engine[0] < 51):
        raise ValueError(f"{sorted(extra)[0]} needs Engine:51-255 or later")
    if target > MAX_TARGET:
        raise SkipSig("unknown target")
    if ("EntryPoint" in values or "NumberOfSections" in values) and target not in EXE_TARGETS:
        raise ValueError("EntryPoint/NumberOfSections need Target 1, 6 or 9")
    inter = tuple(values["Intermediates"].split(">")) if "Intermediates" in values else ()
    if len(inter) > 16:
        raise ValueError("too many Intermediates")
    return Tdb(
        target=target,
        engine=engine,
        file_size=_range(values["FileSize"], "FileSize") if "FileSize" in values else None,
        entry_point=_range(values["EntryPoint"], "EntryPoint") if "EntryPoint" in values else None,
        sections=(
            _range(values["NumberOfSections"], "NumberOfSections")
            if "NumberOfSections" in values
            else None
        ),
        container=values.get("Container"),
        intermediates=inter,
        icon_groups=tuple(values[k] for k in ("IconGroup1", "IconGroup2") if k in values),
        handler_type=values.get("HandlerType"),
    )


# ------------------------------------------------------------------------ subsignatures


def _number(text: str) -> int:
    text = text.strip()
    if text.lower().startswith("0x"):
        return int(text[2:], 16)
    if not is_number(text):
        raise ValueError(f"bad number {text!r}")
    return int(text)


def parse_bytecompare(text: str) -> ByteCompareSub:
    """``T(<<N#Opts#Cmp[,Cmp])`` (§4.5)."""
    ref_text, _, rest = text.partition("(")
    if not rest.endswith(")") or not is_number(ref_text):
        raise ValueError(f"bad byte compare {text!r}")
    fields = rest[:-1].split("#")
    if len(fields) != 3:
        raise ValueError(f"bad byte compare {text!r}")
    where, opts, cmps = fields
    if where[:2] not in ("<<", ">>"):
        raise ValueError(f"bad byte compare offset {where!r}")
    delta = _number(where[2:]) * (1 if where[:2] == ">>" else -1)
    base = "a"
    little = False
    exact = False
    j = 0
    if j < len(opts) and opts[j] in "hdai":
        base = opts[j]
        j += 1
    if j < len(opts) and opts[j] in "lb":
        little = opts[j] == "l"
        j += 1
    if j < len(opts) and opts[j] == "e":
        exact = True
        j += 1
    count = _number(opts[j:])
    if base == "d" and little:
        raise ValueError("byte compare: decimal numbers cannot be little-endian")
    if base == "i":
        exact = True
        if count not in (1, 2, 4, 8):
            raise ValueError("byte compare: binary length must be 1, 2, 4 or 8")
    comparisons = []
    for c in cmps.split(","):
        if not c or c[0] not in "<>=":
            raise ValueError(f"bad byte compare comparison {c!r}")
        comparisons.append((c[0], _number(c[1:])))
    if not 1 <= len(comparisons) <= 2:
        raise ValueError("byte compare takes one or two comparisons")
    return ByteCompareSub(int(ref_text), delta, base, little, exact, count, tuple(comparisons))


def parse_pcre(text: str, index: int) -> PcreSub:
    """``[Offset:]Trigger/Regex/[Flags]`` (§4.6)."""
    first = text.find("/")
    last = text.rfind("/")
    if first == last:
        raise ValueError("PCRE subsignature needs /regex/")
    prefix, regex, flags = text[:first], text[first + 1 : last], text[last + 1 :]
    if not regex:
        raise ValueError("empty PCRE")
    if regex.startswith("(?UTF"):
        raise ValueError("(?UTF...) is not supported in PCRE subsignatures")
    if not PCRE_FLAGS.issuperset(flags):
        raise ValueError(f"bad PCRE flags {flags!r}")
    offset_text, sep, trigger_text = prefix.rpartition(":")
    offset = parse_offset(offset_text) if sep else ANY_OFFSET
    if not trigger_text:
        raise ValueError("PCRE subsignature needs a trigger expression")
    trigger = parse_expr(trigger_text)
    if any(i >= index for i in expr_indexes(trigger)):
        raise ValueError("PCRE trigger must refer to earlier subsignatures")
    return PcreSub(offset, trigger, regex, flags)


def parse_subsig(text: str, index: int, target: int) -> SubSig:
    """Parse one subsignature in ClamAV's order: macro, PCRE, byte compare, content."""
    if text.startswith("$"):
        if not (text.startswith("${") and text.endswith("$") and "}" in text):
            raise ValueError(f"bad macro subsignature {text!r}")
        rng, _, group = text[2:-1].partition("}")
        lo, hi = _range(rng, "macro")
        if not is_number(group) or int(group) >= 32:
            raise ValueError(f"bad macro group {group!r}")
        if index == 0:
            raise ValueError("a macro cannot be the first subsignature")
        return MacroSub(lo, hi, int(group))
    if "/" in text:
        return parse_pcre(text, index)
    if "(" in text and text.count("#") >= 2:
        return parse_bytecompare(text)
    if text.startswith("fuzzy_img#"):
        raise SkipSig("fuzzy image hashes are not supported")
    if ":" not in text:  # most subsignatures: bare hex, any offset, no modifiers
        return ContentSub(ANY_OFFSET, parse_checked(text, min_fixed_only=2), "")
    # ClamAV's field rules, checked on 1.4.6: an even count of ':' fields starts with an
    # offset; three or four fields end with modifiers (the field before them is not read);
    # five or more fields keep only the first, so "hex::i*hex::i" is the bare first hex.
    fields = text.split(":")
    n = min(len(fields), 5)
    offset_text = fields[0] if n % 2 == 0 else "*"
    hex_text = fields[1] if n % 2 == 0 else fields[0]
    mods = fields[n - 1] if n in (3, 4) else ""
    if not MODIFIERS.issuperset(mods):
        raise ValueError(f"bad subsignature modifier {mods!r}")
    offset = parse_offset(offset_text)
    if offset.kind == "macro":
        raise ValueError("macro offsets are for .ndb signatures")
    if offset.needs_exe and target not in EXE_TARGETS:
        raise ValueError(f"invalid offset type for target {target}")
    pattern = parse_checked(hex_text, brackets_as_gaps="f" in mods or "w" in mods, min_fixed_only=2)
    return ContentSub(offset, pattern, "".join(sorted(set(mods))))


@lru_cache(maxsize=256)
def _simple_mods(text: str) -> str | None:
    """The modifiers of ``hex::text`` as parse_subsig stores them; None unless plain ones."""
    if ":" in text or not MODIFIERS.issuperset(text):
        return None
    return "".join(sorted(set(text)))


@lru_cache(maxsize=1 << 14)
def _logic(text: str) -> tuple[Expr, int, tuple[int, ...]]:
    """A logical expression, the highest subsignature it names and the hit caps for that
    many subsignatures (a line is refused unless it has exactly that many)."""
    expr = parse_expr(text)
    highest = max(expr_indexes(expr))
    if highest >= MAX_SUBSIGS:  # refused by the caller; no caps list of that size
        return expr, highest, ()
    return expr, highest, expr_caps(expr, highest + 1)


def parse_ldb_line(
    line: str, official: bool, seen: dict[str, ContentSub] | None = None
) -> LogicalSig:
    """Parse one logical signature line (raises ValueError or SkipSig).

    ``seen`` maps subsignature texts already parsed in this file to their (immutable)
    result: databases repeat many, and equal texts give equal content subsignatures
    whatever their position; only the target type can refuse one (EP/section offsets).
    """
    fields = split_ldb(line)
    if len(fields) < 4:
        raise ValueError(f"expected at least 4 ';'-separated fields, got {len(fields)}")
    name, tdb_text, logic = fields[0], fields[1], fields[2]
    subs_text = fields[3:]
    if not name:
        raise ValueError("empty signature name")
    if len(subs_text) > MAX_SUBSIGS:
        raise ValueError(f"too many subsignatures ({len(subs_text)})")
    tdb = parse_tdb(tdb_text)
    expr, highest, caps = _logic(logic)
    if highest + 1 != len(subs_text):
        raise ValueError(
            f"logical expression names subsignature {highest} but there are {len(subs_text)}"
        )
    subsigs: list[SubSig] = []
    target = tdb.target
    compares = False
    if seen is None:
        seen = {}
    fromhex = bytes.fromhex
    for i, s in enumerate(subs_text):
        sub = seen.get(s)
        if sub is None:
            # most subsignatures are bare hex, perhaps with "::" and modifiers
            hex_text, colons, mods = s.partition("::")
            modifiers = _simple_mods(mods) if colons else ""
            try:
                data = fromhex(hex_text) if modifiers is not None else b""
            except ValueError:
                data = b""
            if modifiers is not None and len(data) >= 2 and len(data) * 2 == len(hex_text):
                # (fromhex skips spaces: such a text takes the general path)
                sub = ContentSub(ANY_OFFSET, Pattern([Part([("lit", data)])], []), modifiers)
            else:
                try:
                    new = parse_subsig(s, i, target)
                except (ValueError, PatternError) as exc:
                    raise ValueError(f"subsignature {i}: {exc}") from None
                if not isinstance(new, ContentSub) or new.offset.needs_exe:
                    # not reusable: the others depend on their position, these on the target
                    compares = compares or isinstance(new, ByteCompareSub)
                    subsigs.append(new)
                    continue
                sub = new
            seen[s] = sub
        subsigs.append(sub)
    for i, other in enumerate(subsigs if compares else ()):
        if isinstance(other, ByteCompareSub):
            if other.ref >= i or not isinstance(subsigs[other.ref], ContentSub):
                raise ValueError(
                    f"subsignature {i}: byte compare must refer to an earlier content subsignature"
                )
            # it reads the last match (libclamav's lsigsuboff_last): every hit matters
            caps = caps[: other.ref] + (ALL_HITS,) + caps[other.ref + 1 :]
    return LogicalSig(final_name(name, official), tdb, expr, tuple(subsigs), caps)


def parse_ldb(
    text: str,
    origin: str,
    *,
    official: bool,
    ignored: frozenset[str] = frozenset(),
    sources: list[str] | None = None,
    batch: Batch[LogicalSig] | None = None,
) -> tuple[list[LogicalSig], list[tuple[int, str]]]:
    """Parse an .ldb file: the signatures, and (line, reason) for each one skipped.

    ``sources`` gets each kept signature's line: ``parse_ldb_line(line, official)`` gives
    it again (the compiled cache stores lines rather than pickles). ``batch`` (see
    common.Batch) takes the signatures every BATCH_SIGS kept ones."""
    out: list[LogicalSig] = []
    skipped: list[tuple[int, str]] = []
    seen: dict[str, ContentSub] = {}
    for lineno, line in iter_lines(text, origin):
        try:
            sig = parse_ldb_line(line, official, seen)
        except SkipSig as why:
            skipped.append((lineno, str(why)))
            continue
        except (ValueError, PatternError) as exc:
            raise SignatureError(origin, lineno, f"{line.split(';', 1)[0][:100]}: {exc}") from None
        if ignored and line.split(";", 1)[0] in ignored:
            continue
        out.append(sig)
        if sources is not None:
            sources.append(line)
        if batch is not None and len(out) == BATCH_SIGS:
            hand_over(batch, out, sources)
    return out, skipped
