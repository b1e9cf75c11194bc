"""Property tests (hypothesis) for the parsers whose contracts are easy to state: framing
round trips, and "only the documented error" for the configuration and signature parsers.

Derandomised and without an example database, so a run is repeatable and leaves no files.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.config import OPTIONS, OptionType, parse_config
from vigil.config.freshclam import parse_freshclam_config
from vigil.engine.signatures.cdb import parse_cdb
from vigil.engine.signatures.hdb import HashBatch, parse_hash_db
from vigil.engine.signatures.ign import parse_ign
from vigil.engine.signatures.ldb import parse_ldb
from vigil.engine.signatures.ndb import parse_db, parse_ndb
from vigil.engine.signatures.pattern import PatternError, parse_offset
from vigil.errors import ConfigError, SignatureError
from vigil.protocol import replies
from vigil.protocol.framing import (
    COMMANDS,
    LEGACY_OK,
    WITH_PATH,
    Mode,
    NeedMore,
    match_command,
    next_command,
    read_chunk_header,
)

FAST = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)


def _quiet(_message: str) -> None:
    """Deprecation warnings are normal output, not failures."""


# ------------------------------------------------------------------ protocol framing

names = st.sampled_from(COMMANDS)
args = st.binary(min_size=1, max_size=64)


def encode(name: str, arg: bytes, mode: Mode) -> bytes:
    body = name.encode() + (b" " + arg if name in WITH_PATH else b"")
    if mode is Mode.Z:
        return b"z" + body + b"\0"
    if mode is Mode.N:
        return b"n" + body + b"\n"
    return body + b"\n"


@FAST
@given(names, args, st.sampled_from(list(Mode)))
def test_framing_round_trip(name: str, arg: bytes, mode: Mode) -> None:
    term = b"\0" if mode is Mode.Z else b"\n"
    arg = arg.replace(term, b"x").replace(b"\n", b"x").rstrip(b"\r") or b"x"
    wire = encode(name, arg, mode)
    framed = next_command(wire, first_read=True)
    assert framed.consumed == len(wire) and framed.mode is mode
    cmd = match_command(framed)
    if mode is Mode.LEGACY and name not in LEGACY_OK:
        assert cmd is None
        return
    assert cmd is not None
    # names are matched by prefix in table order, as clamd does (VERSION before VERSIONCOMMANDS
    # is not an issue: the table lists VERSIONCOMMANDS first)
    assert cmd.name == name
    assert cmd.arg == (arg if name in WITH_PATH else b"")


@FAST
@given(st.lists(st.tuples(names, args), min_size=1, max_size=8), st.sampled_from([Mode.Z, Mode.N]))
def test_pipelined_commands_frame_in_order(cmds: list[tuple[str, bytes]], mode: Mode) -> None:
    clean = [
        (n, a.replace(b"\0", b"x").replace(b"\n", b"x").rstrip(b"\r") or b"x") for n, a in cmds
    ]
    buf = b"".join(encode(n, a, mode) for n, a in clean)
    got = []
    while buf:
        framed = next_command(buf, first_read=False)
        got.append(framed)
        buf = buf[framed.consumed :]
    assert len(got) == len(clean)


@FAST
@given(st.binary(max_size=64))
def test_incomplete_z_command_needs_more(body: bytes) -> None:
    wire = b"z" + body.replace(b"\0", b"")
    try:
        next_command(wire, first_read=False)
    except NeedMore:
        return
    raise AssertionError("a z command without NUL was framed")


@FAST
@given(st.integers(0, 2**32 - 1), st.binary(max_size=8), st.integers(0, 4))
def test_chunk_header_round_trip(size: int, rest: bytes, pad: int) -> None:
    buf = b"\0" * pad + struct.pack(">I", size) + rest
    assert read_chunk_header(buf, pad) == size
    assert read_chunk_header(buf[: pad + 3], pad) is None


@FAST
@given(st.binary(max_size=40), st.sampled_from([b"\0", b"\n"]), st.none() | st.integers(1, 10**6))
def test_reply_lines(body: bytes, term: bytes, req: int | None) -> None:
    line = replies.line(body, term, req)
    assert line.endswith(term)
    if req is not None:
        assert line.startswith(b"%d: " % req)


# ------------------------------------------------------------------ configuration files

option_names = st.sampled_from([o.name for o in OPTIONS])
values = st.one_of(
    st.sampled_from(["yes", "no", "true", "false", "0", "1", "10M", "2G", "100k", "/tmp/x"]),
    st.text(max_size=20),
)
config_lines = st.lists(
    st.one_of(
        st.tuples(option_names, values).map(lambda t: f"{t[0]} {t[1]}"),
        st.sampled_from(["# comment", "", "Example", "  LogFile /tmp/log"]),
        st.text(max_size=30),
    ),
    max_size=12,
)


@FAST
@given(config_lines)
def test_clamd_conf_raises_only_config_error(lines: list[str]) -> None:
    try:
        parse_config("\n".join(lines) + "\n", "clamd.conf", on_warning=_quiet)
    except ConfigError as exc:
        assert str(exc).startswith("clamd.conf")


@FAST
@given(st.lists(st.tuples(option_names, values), max_size=6))
def test_clamd_conf_numbers_and_booleans(pairs: list[tuple[str, str]]) -> None:
    by_name = {o.name: o for o in OPTIONS}
    text = "".join(f"{n} {v}\n" for n, v in pairs)
    try:
        cfg = parse_config(text, "clamd.conf", on_warning=_quiet)
    except ConfigError:
        return
    for n, _ in pairs:
        opt = by_name[n]
        if opt.deprecated or opt.repeat:
            continue  # deprecated options are dropped, repeatable ones are tuples
        value = getattr(cfg, opt.attr)
        if opt.type is OptionType.BOOL:
            assert isinstance(value, bool)
        elif opt.type in (OptionType.NUMBER, OptionType.SIZE, OptionType.SIZE64):
            assert isinstance(value, int)


@FAST
@given(st.text(max_size=200))
def test_freshclam_conf_raises_only_config_error(text: str) -> None:
    try:
        parse_freshclam_config(text, "freshclam.conf", on_warning=_quiet)
    except ConfigError:
        pass


# ------------------------------------------------------------------ signature databases

hexes = st.sampled_from([16, 20, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
sig_names = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-",
    min_size=1,
    max_size=30,
)


@FAST
@given(st.lists(st.tuples(hexes, st.integers(1, 2**32 - 2), sig_names), min_size=1, max_size=20))
def test_hdb_round_trip(rows: list[tuple[bytes, int, str]]) -> None:
    text = "".join(f"{d.hex()}:{size}:{name}\n" for d, size, name in rows)
    batches: list[HashBatch] = []
    assert parse_hash_db(text, "t.hdb", "hdb", batches.append, official=False) == len(rows)
    got = {
        (b.digests[i * b.width : (i + 1) * b.width], b.sizes[i], b.names[i])
        for b in batches
        for i in range(len(b.sizes))
    }
    assert got == {(d, size, name + ".UNOFFICIAL") for d, size, name in rows}


@FAST
@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=300))
def test_text_parsers_raise_only_signature_error(text: str) -> None:
    for parse in (
        lambda: parse_ndb(text, "t.ndb", official=False),
        lambda: parse_db(text, "t.db", official=False),
        lambda: parse_ldb(text, "t.ldb", official=False),
        lambda: parse_cdb(text, "t.cdb", official=False),
        lambda: parse_ign(text, "t.ign2"),
        lambda: parse_hash_db(text, "t.hsb", "hsb", lambda b: None, official=False),
    ):
        try:
            parse()
        except SignatureError:
            pass


offsets = st.one_of(
    st.just("*"),
    st.integers(0, 10**6).map(str),
    st.integers(0, 10**6).map(lambda n: f"EOF-{n}"),
    st.tuples(st.sampled_from("+-"), st.integers(0, 10**6)).map(lambda t: f"EP{t[0]}{t[1]}"),
    st.tuples(st.integers(0, 95), st.integers(0, 10**6)).map(lambda t: f"S{t[0]}+{t[1]}"),
    st.integers(0, 10**6).map(lambda n: f"SL+{n}"),
    st.integers(0, 95).map(lambda n: f"SE{n}"),
)


@FAST
@given(offsets, st.none() | st.integers(0, 10**6))
def test_offsets_parse(text: str, shift: int | None) -> None:
    spec = text if shift is None or text == "*" else f"{text},{shift}"
    off = parse_offset(spec)
    if text != "*":
        assert off.has_shift is (shift is not None)
        assert off.shift == (shift or 0)


@FAST
@given(st.text(alphabet=st.sampled_from("0123456789¹²³,+-*$EOFPSLVI"), max_size=12))
def test_offset_parser_raises_only_pattern_error(text: str) -> None:
    # PatternError, not a bare ValueError: the .ftm loader catches only PatternError (a
    # superscript digit once passed str.isdigit and broke int())
    try:
        parse_offset(text)
    except PatternError:
        pass
