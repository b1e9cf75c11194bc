"""YARA rules (.yar/.yara), the subset ClamAV supports, as logical signatures (§1.15).

Each rule becomes a logical signature named ``YARA.<rule>``: text and hex strings become
content subsignatures, regular-expression strings PCRE subsignatures, and conditions built
from ``$s``, ``#s > n``, ``any/all/N of them``, ``and``, ``or``, ``not $s`` and parentheses
become the logical expression. Rules using anything else (modules, ``filesize``, ``at``,
``uint16`` ...) are skipped with a notice, as a rule ClamAV cannot load.
"""

from __future__ import annotations

import re

from vigil.engine.signatures.common import SkipSig, final_name
from vigil.engine.signatures.ldb import expr_caps, parse_expr
from vigil.engine.signatures.model import ContentSub, Expr, LogicalSig, PcreSub, SubSig, Tdb
from vigil.engine.signatures.pattern import ANY_OFFSET, PatternError, check_static, parse_pattern
from vigil.errors import SignatureError

__all__ = ["parse_yara"]

_RULE = re.compile(
    r"(?:^|\n)\s*(?:(private|global)\s+)*rule\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^{]*)?\{", re.S
)
_STRING = re.compile(
    r"""\$([A-Za-z0-9_]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|\{([^}]*)\}|/((?:[^/\\\n]|\\.)+)/([is]*))"""
    r"""((?:\s+(?:nocase|wide|ascii|fullword|private))*)""",
    re.S,
)
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def _text_hex(text: str) -> str:
    """A YARA text string (with its escapes) as ClamAV hex."""
    raw = bytes(text, "latin-1").decode("unicode_escape").encode("latin-1")
    return raw.hex()


def _hex_string(body: str) -> str:
    """A YARA hex string as ClamAV hex: jumps [n-m] become {n-m}."""
    h = re.sub(r"\s+", "", body)
    h = re.sub(r"\[(\d*)-(\d*)\]", lambda m: f"{{{m.group(1)}-{m.group(2)}}}", h)
    return re.sub(r"\[(\d+)\]", r"{\1}", h)


def _condition(cond: str, names: list[str]) -> str:
    """Translate a YARA condition into a logical expression over subsignature indexes."""
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    text = " ".join(cond.split())
    everyone = "|".join(str(i) for i in range(n))

    def of(m: re.Match[str]) -> str:
        quant = m.group(1)
        if quant == "all":
            return "(" + "&".join(str(i) for i in range(n)) + ")"
        if quant == "any":
            return f"({everyone})"
        return f"({everyone})>{int(quant) - 1},{quant}"

    text = re.sub(r"\b(any|all|\d+)\s+of\s+them\b", of, text)
    text = re.sub(
        r"#([A-Za-z0-9_]+)\s*(==|>|<)\s*(\d+)",
        lambda m: f"{index[m.group(1)]}{'=' if m.group(2) == '==' else m.group(2)}{m.group(3)}",
        text,
    )
    text = re.sub(r"\bnot\s+\$([A-Za-z0-9_]+)", lambda m: f"{index[m.group(1)]}=0", text)
    text = re.sub(r"\$([A-Za-z0-9_]+)", lambda m: str(index[m.group(1)]), text)
    text = text.replace(" and ", "&").replace(" or ", "|").replace(" ", "")
    if not re.fullmatch(r"[0-9&|()<>=,]+", text):
        raise SkipSig(f"condition not supported: {cond.strip()[:80]}")
    return text


def _rule(name: str, body: str, official: bool) -> LogicalSig:
    strings_part, sep, cond = body.partition("condition:")
    if not sep:
        raise SkipSig("rule without a condition")
    strings_part = strings_part.split("strings:", 1)[-1]
    subs: list[SubSig] = []
    names: list[str] = []
    for m in _STRING.finditer(strings_part):
        ident, text, hexbody, regex, re_flags, mods = m.groups()
        mods_set = set(mods.split())
        names.append(ident or f"anon{len(names)}")
        if regex is not None:
            if not subs:
                raise SkipSig("a regular expression needs an earlier string as trigger")
            trigger: Expr = parse_expr("|".join(str(i) for i in range(len(subs))))
            flags = re_flags + ("i" if "nocase" in mods_set else "")
            subs.append(PcreSub(ANY_OFFSET, trigger, regex, flags))
            continue
        hex_text = _text_hex(text) if text is not None else _hex_string(hexbody)
        letters = ""
        if text is not None:
            if "nocase" in mods_set:
                letters += "i"
            if "fullword" in mods_set:
                letters += "f"
            if "wide" in mods_set:
                letters += "w" + ("a" if "ascii" in mods_set else "")
        try:
            pattern = parse_pattern(hex_text, brackets_as_gaps=True)
            check_static(pattern, min_fixed_only=2)
        except PatternError as exc:
            raise SkipSig(f"string ${ident}: {exc}") from None
        subs.append(ContentSub(ANY_OFFSET, pattern, "".join(sorted(set(letters)))))
    if not subs or len(subs) > 64:
        raise SkipSig("a rule needs 1 to 64 strings")
    try:
        expr = parse_expr(_condition(cond.rsplit("}", 1)[0], names))
    except (KeyError, ValueError):
        raise SkipSig("condition not supported") from None
    return LogicalSig(
        final_name("YARA." + name, official),
        Tdb(target=0),
        expr,
        tuple(subs),
        expr_caps(expr, len(subs)),
    )


def parse_yara(
    text: str, origin: str, *, official: bool
) -> tuple[list[LogicalSig], list[tuple[int, str]]]:
    """Rules as logical signatures, and (line, reason) for every rule skipped."""
    if "import " in text and re.search(r'^\s*import\s+"', text, re.M):
        raise SignatureError(origin, 1, "YARA modules (import) are not supported")
    clean = _COMMENT.sub(lambda m: "\n" * m.group().count("\n"), text)
    out: list[LogicalSig] = []
    skipped: list[tuple[int, str]] = []
    starts = list(_RULE.finditer(clean))
    if not starts and clean.strip():
        raise SignatureError(origin, 1, "no YARA rule found")
    for k, m in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(clean)
        lineno = clean.count("\n", 0, m.start(2)) + 1
        if m.group(1) == "global":
            skipped.append((lineno, "global rules are not supported"))
            continue
        try:
            out.append(_rule(m.group(2), clean[m.end() : end], official))
        except SkipSig as why:
            skipped.append((lineno, str(why)))
    return out, skipped
