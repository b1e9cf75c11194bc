"""The fast paths of a cold database build give exactly what the plain code gives.

Hash files are parsed column-wise (``hdb._parse_fast``) and checked here against the
line-by-line parser on random valid input; bad input must still reach the line-by-line
parser and be reported with its line number. The other fast paths (digest sorting,
signature pickling, atom scoring, name tables) are checked against their plain forms.
"""

from __future__ import annotations

import pickle
import random
from itertools import accumulate

import numpy as np
import pytest

from vigil.engine.matcher.body import MAX_ATOM, _score_run
from vigil.engine.matcher.hashes import HashBuilder, NameTable, digest_order
from vigil.engine.signatures import hdb
from vigil.engine.signatures.common import MAX_LINE
from vigil.engine.signatures.hdb import (
    HASH_KINDS,
    HashBatch,
    _parse_arrays,
    _parse_block,
    _parse_slow,
    parse_hash_db,
)
from vigil.engine.signatures.ldb import parse_expr, parse_ldb
from vigil.engine.signatures.model import CdbSig, HashSig
from vigil.engine.signatures.ndb import parse_ndb
from vigil.errors import SignatureError

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._- ()\xe9"


def _line(
    rng: random.Random, size_first: bool, fields: int, star_ok: bool, plain: bool = False
) -> str:
    width = rng.choice((32, 32, 40, 64))
    digest = "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(width))
    levels = ["", "0", "73", "216", "217", "255", "073"] + ([] if plain else [" 73"])
    fl = rng.choice(levels)
    top = rng.choice(["", "0", "215", "216", "300"])
    if star_ok and fl.strip() and int(fl) >= 73 and rng.random() < 0.2:
        size = "*"
    else:
        size = str(rng.choice([1, 2, 68, 4096, 0xFFFFFFFE, rng.randrange(1, 1 << 32 - 1)]))
        if rng.random() < 0.05 and not (plain and len(size) > 8):
            size = "00" + size  # the array tier reads at most 10 digits
    name = "".join(rng.choice(NAME_CHARS) for _ in range(rng.randrange(1, 30)))
    cols = [size, digest] if size_first else [digest, size]
    cols.append(name)
    if fields >= 4:
        cols.append(fl)
    if fields == 5:
        cols.append(top)
    if size == "*" and fields < 4:
        cols[cols.index("*")] = "7"
    return ":".join(cols)


def _text(rng: random.Random, size_first: bool, plain: bool = False) -> str:
    uniform = rng.random() < 0.5
    fields = rng.choice((3, 4, 5))
    lines = [
        _line(rng, size_first, fields if uniform else rng.choice((3, 4, 5)), True, plain)
        for _ in range(rng.randrange(1, 60))
    ]
    if plain:
        return "\n".join(lines)
    if rng.random() < 0.2:
        lines.insert(rng.randrange(len(lines) + 1), "# a comment: with colons")
    text = "\n".join(lines)
    if rng.random() < 0.8:
        text += "\n"
    if rng.random() < 0.1:
        text = text.replace("\n", "\r\n")
    return text


def _parse_fast(
    text: str, kind: str, size_first: bool, official: bool, ignored: frozenset[str]
) -> dict[int, HashBatch] | None:
    return _parse_block(text.encode("latin-1"), kind, size_first, official, ignored)


def _rows(b: HashBatch) -> tuple[object, ...]:
    return (b.kind, b.width, b.digests, b.sizes.tolist(), b.name_blob, b.name_ends.tolist())


def _same(a: dict[int, HashBatch], b: dict[int, HashBatch]) -> None:
    assert list(a) == list(b)
    for w in a:
        assert _rows(a[w]) == _rows(b[w])
        assert a[w].names == b[w].names


@pytest.mark.parametrize("seed", range(40))
def test_fast_and_slow_hash_parsers_agree(seed: int) -> None:
    rng = random.Random(seed)
    suffix = rng.choice(sorted(HASH_KINDS))
    kind, size_first = HASH_KINDS[suffix]
    text = _text(rng, size_first)
    official = rng.random() < 0.5
    names = [ln.split(":")[1 if size_first else 2] for ln in text.splitlines() if ln[:1] != "#"]
    ignored = frozenset(rng.sample(names, 1)) if rng.random() < 0.3 else frozenset()
    slow = _parse_slow(text, "t", kind, size_first, official, ignored)
    fast = _parse_fast(text, kind, size_first, official, ignored)
    assert fast is not None
    _same(fast, slow)


@pytest.mark.parametrize("seed", range(40))
def test_array_parser_agrees_with_the_slow_one(seed: int) -> None:
    """The numpy tier (plain forms only) gives exactly the line-by-line result."""
    rng = random.Random(1000 + seed)
    suffix = rng.choice(sorted(HASH_KINDS))
    kind, size_first = HASH_KINDS[suffix]
    text = _text(rng, size_first, plain=True)
    official = rng.random() < 0.5
    got = _parse_arrays((text + "\n").encode("latin-1"), kind, size_first, official)
    assert got is not None
    _same(got, _parse_slow(text, "t", kind, size_first, official, frozenset()))


def test_fast_path_takes_the_official_shapes() -> None:
    """Uniform and mixed field counts, several digest widths, a '*' size: no fallback."""
    text = (
        "44d88612fea8a8f36de82e1278abb02f:68:Eicar-1\n"
        "3395856ce81f2b7382dee72602f798b642f14140:68:Eicar-2:73\n"
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:*:Eicar-3:73:255\n"
        "44d88612fea8a8f36de82e1278abb02f:68:Eicar-4:300\n"
    )
    fast = _parse_fast(text, "file", False, False, frozenset())
    assert fast is not None
    _same(fast, _parse_slow(text, "t", "file", False, False, frozenset()))
    assert list(fast) == [16, 20, 32]
    assert fast[16].names == ["Eicar-1.UNOFFICIAL"]  # MinFL 300 skipped
    assert fast[32].sizes.tolist() == [0]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("44d88612fea8a8f36de82e1278abb02g:68:X", "bad hash"),
        ("44d88612fea8a8f36de82e1278abb0 f:68:X", "bad hash"),
        ("44d88612fea8a8f36de82e1278abb02f:+68:X", "bad size"),
        ("44d88612fea8a8f36de82e1278abb02f:\xb268:X", "bad size"),
        ("44d88612fea8a8f36de82e1278abb02f:0:X", "bad size"),
        ("44d88612fea8a8f36de82e1278abb02f:4294967295:X", "bad size"),
        ("44d88612fea8a8f36de82e1278abb02f:" + "1" * 5000 + ":X", "bad size"),
        ("44d88612fea8a8f36de82e1278abb02f:68:", "empty signature name"),
        ("44d88612fea8a8f36de82e1278abb02f:*:X", "size '*'"),
        ("44d88612fea8a8f36de82e1278abb02f:*:X:72", "size '*'"),
        ("44d88612fea8a8f36de82e1278abb02f:68:X:7x", "bad functionality level"),
        ("44d88612fea8a8f36de82e1278abb02f:68:X:1:2:3", "expected 3 to 5"),
        ("44d88612fea8a8f36de82e1278abb02f:68", "expected 3 to 5"),
        ("   ", "blank line"),
    ],
)
def test_bad_hash_line_is_reported_with_its_line_number(bad: str, reason: str) -> None:
    good = "44d88612fea8a8f36de82e1278abb02f:68:Good:73:255"
    lines = [good] * 5 + [bad] + [good] * 3
    text = "\n".join(lines) + "\n"
    assert _parse_fast(text, "file", False, False, frozenset()) is None
    with pytest.raises(SignatureError) as info:
        parse_hash_db(text, "x.hdb", "hdb", lambda b: None, official=False)
    assert info.value.lineno == 6
    assert reason in info.value.reason


def test_misaligned_field_counts_are_not_taken_by_stride() -> None:
    """Lines of 3 and 5 fields average 4: the columns must still be the right ones."""
    text = (
        "44d88612fea8a8f36de82e1278abb02f:68:A\n"
        "44d88612fea8a8f36de82e1278abb02e:69:B:0:255\n"
        "44d88612fea8a8f36de82e1278abb02d:70:C\n"
        "44d88612fea8a8f36de82e1278abb02c:71:D:0:255\n"
    )
    fast = _parse_fast(text, "file", False, True, frozenset())
    assert fast is not None
    assert fast[16].names == ["A", "B", "C", "D"]
    assert fast[16].sizes.tolist() == [68, 69, 70, 71]


def test_rare_forms_fall_back_and_load_as_before() -> None:
    """(Clam) names, a stray CR and a blank line go the line-by-line way."""
    text = "44d88612fea8a8f36de82e1278abb02f:68:Old (Clam)\n"
    assert _parse_fast(text, "file", False, True, frozenset()) is None
    got: list[HashBatch] = []
    parse_hash_db(text, "x.hdb", "hdb", got.append, official=True)
    assert got[0].names == ["Old"]
    text = "44d88612fea8a8f36de82e1278abb02f:68:N\r\r\n"
    assert _parse_fast(text, "file", False, True, frozenset()) is None
    with pytest.raises(SignatureError) as info:
        parse_hash_db("44d88612fea8a8f36de82e1278abb02f:68:N\n\n", "x", "hdb", print, official=True)
    assert info.value.lineno == 2


def _merged(batches: list[HashBatch]) -> dict[int, HashBatch]:
    """One batch per width (widths in the order they first came), as a whole-file parse."""
    parts: dict[int, list[HashBatch]] = {}
    for b in batches:
        parts.setdefault(b.width, []).append(b)
    return {
        w: HashBatch.from_lists(
            bs[0].kind,
            w,
            b"".join(b.digests for b in bs),
            [s for b in bs for s in b.sizes.tolist()],
            [n for b in bs for n in b.names],
            "",
        )
        for w, bs in parts.items()
    }


def _blocky_text(rng: random.Random, size_first: bool) -> str:
    """Valid input with what a block cut must not disturb: comments, CRLF, several widths,
    field counts and, now and then, a form only the line-by-line parser takes."""
    lines: list[str] = []
    for _ in range(rng.randrange(1, 80)):
        r = rng.random()
        if r < 0.1:
            lines.append("# a comment: 0123:x")
        else:
            line = _line(rng, size_first, rng.choice((3, 4, 5)), True, rng.random() < 0.5)
            if r < 0.13:  # a name whose " (Clam)" is cut
                fields = line.split(":")
                fields[2] += " (Clam)"
                line = ":".join(fields)
            lines.append(line)
    newline = "\r\n" if rng.random() < 0.3 else "\n"
    text = newline.join(lines)
    return text + newline if rng.random() < 0.8 else text


@pytest.mark.parametrize("seed", range(30))
def test_block_wise_parse_gives_the_whole_file_batches(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of any size (down to one line each) give the whole file's batches, and a
    HashBuilder fed block by block holds exactly the names and tables of a whole-file load."""
    rng = random.Random(5000 + seed)
    suffix = rng.choice(sorted(HASH_KINDS))
    kind, size_first = HASH_KINDS[suffix]
    official = rng.random() < 0.5
    text = _blocky_text(rng, size_first)
    data = text.encode("latin-1")
    whole = _parse_slow(text, "t", kind, size_first, official, frozenset())

    def load(block: int) -> tuple[list[HashBatch], HashBuilder]:
        monkeypatch.setattr(hdb, "BLOCK", block)
        builder = HashBuilder(NameTable())
        first: list[HashBatch] = []
        for got in (first, []):  # two files: names are numbered file by file
            n = parse_hash_db(data, "t", suffix, got.append, official=official)
            assert n == sum(len(b) for b in whole.values())
            for b in got:
                builder.add(b)
            builder.end_file()
        return first, builder

    ref_batches, ref_builder = load(1 << 30)
    assert len(ref_batches) == len(whole)
    _same(_merged(ref_batches), whole)
    ref_store = ref_builder.build()
    for block in (0, 1, 37, 200, rng.randrange(1, len(data) + 2)):
        got, builder = load(block)
        _same(_merged(got), whole)
        store = builder.build()
        assert bytes(store.names.parts()[0]) == bytes(ref_store.names.parts()[0])
        assert store.names.parts()[1].tolist() == ref_store.names.parts()[1].tolist()
        assert list(store.tables) == list(ref_store.tables)
        for key, table in store.tables.items():
            ref = ref_store.tables[key]
            assert table.digests.tolist() == ref.digests.tolist()
            assert table.sizes.tolist() == ref.sizes.tolist()
            assert table.names.tolist() == ref.names.tolist()


@pytest.mark.parametrize("block", [0, 1, 45, 90, 1000])
@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("44d88612fea8a8f36de82e1278abb02g:68:X", "bad hash"),
        ("", "blank line"),
        ("\r", "blank line"),
        ("44d88612fea8a8f36de82e1278abb02f:68:X:1:2:3", "expected 3 to 5"),
    ],
)
def test_bad_line_in_a_later_block_is_named_by_its_file_line(
    block: int, bad: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Comments, CRLF and lines before the bad one are all counted, wherever blocks end."""
    monkeypatch.setattr(hdb, "BLOCK", block)
    good = "44d88612fea8a8f36de82e1278abb02f:68:Good:73:255"
    lines = [good, "# comment", good + "\r", "#", good] * 3 + [bad] + [good] * 4
    data = "\n".join(lines).encode("latin-1") + b"\n"
    with pytest.raises(SignatureError) as info:
        parse_hash_db(data, "x.hdb", "hdb", lambda b: None, official=False)
    assert info.value.lineno == 16 and reason in info.value.reason
    assert str(info.value).startswith("x.hdb:16: ")


@pytest.mark.parametrize("block", [0, 1, 1 << 30])
def test_block_edges_keep_the_whole_file_rules(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty file, a second newline at the end and comment-only files, cut anywhere."""
    monkeypatch.setattr(hdb, "BLOCK", block)
    good = b"44d88612fea8a8f36de82e1278abb02f:68:Good\n"
    with pytest.raises(SignatureError) as info:
        parse_hash_db(b"", "x.hdb", "hdb", lambda b: None, official=False)
    assert info.value.lineno == 0 and "empty" in info.value.reason
    with pytest.raises(SignatureError) as info:
        parse_hash_db(good * 3 + b"\n", "x.hdb", "hdb", lambda b: None, official=False)
    assert info.value.lineno == 4 and "blank line" in info.value.reason
    got: list[HashBatch] = []
    data = b"# only\r\n# comments\n" + good + b"# here\n" * 3 + good
    assert parse_hash_db(data, "x.hdb", "hdb", got.append, official=True) == 2
    assert [n for b in got for n in b.names] == ["Good", "Good"]
    assert parse_hash_db(b"#a\n#b", "x.hdb", "hdb", got.append, official=True) == 0


def test_digest_order_is_a_stable_argsort() -> None:
    rng = np.random.default_rng(7)
    for width in (16, 20, 32):
        for n in (0, 1, 2, 3, 500, 5000):
            raw = bytearray(rng.integers(0, 256, n * width, dtype=np.uint8).tobytes())
            for i in range(0, n, 5):  # duplicates, shared 8-byte heads, trailing zeros
                j = int(rng.integers(0, n))
                cut = int(rng.integers(0, width + 1))
                raw[i * width : i * width + cut] = raw[j * width : j * width + cut]
                if i % 3 == 0:
                    raw[i * width + cut : (i + 1) * width] = bytes(width - cut)
            d = np.frombuffer(bytes(raw), dtype=f"S{width}")
            assert digest_order(d, width).tolist() == np.argsort(d, kind="stable").tolist()


def test_name_table_add_many_with_suffix() -> None:
    table = NameTable()
    table.add("first")
    ids = table.add_many(["a", "bc", "d\xe9f"], ".UNOFFICIAL")
    ids2 = table.add_many([], ".UNOFFICIAL")
    ids3 = table.add_many(["x"])
    assert list(ids) == [1, 2, 3] and not ids2 and list(ids3) == [4]
    assert [table[i] for i in range(len(table))] == [
        "first",
        "a.UNOFFICIAL",
        "bc.UNOFFICIAL",
        "d\xe9f.UNOFFICIAL",
        "x",
    ]


def test_signatures_pickle_to_equal_objects() -> None:
    ndb = (
        "Body-1:1:EP+10,5:6162??63{4-8}6464(65|66)*6869:73\n"
        "Body-2:0:*:414243\nBody-3:0:10:41[1-2]4243??44"
    )
    ldb = (
        "Lsig-1;Engine:81-255,Target:1,FileSize:10-2000;((0|1)>2,1)&2&3&4;"
        "S1+4:414243::iw;4142(43|44)45;${0-20}5$;0&1/ab[c]d/i;0(>>2#hb2#=12)"
    )
    sigs = [
        *parse_ndb(ndb, "t.ndb", official=False),
        *parse_ldb(ldb, "t.ldb", official=False)[0],
        CdbSig("C", "CL_TYPE_ZIP", (1, 2), "a.*", None, (3, 4), 1, None),
        HashSig("file", b"\x00" * 16, None, "H"),
    ]
    assert len(sigs) == 6
    for sig in sigs:
        back = pickle.loads(pickle.dumps(sig, pickle.HIGHEST_PROTOCOL))
        assert back == sig and type(back) is type(sig)


def _reference_score(run: bytes) -> tuple[float, bytes]:
    """The atom score as first written: every window's weight from prefix sums."""
    weights = [
        {0x00: 0.1, 0xFF: 0.2, 0x20: 0.5, 0x90: 0.4, 0xCC: 0.4, 0x01: 0.6, 0x0A: 0.6}.get(b, 1.0)
        for b in range(256)
    ]
    if len(run) <= MAX_ATOM:
        return sum(weights[b] for b in run) + (len(set(run)) - 1) * 0.1, run
    prefix = list(accumulate((weights[b] for b in run), initial=0.0))
    sums = [b - a for a, b in zip(prefix, prefix[MAX_ATOM:], strict=False)]
    i = sums.index(max(sums))
    window = run[i : i + MAX_ATOM]
    return prefix[i + MAX_ATOM] - prefix[i] + (len(set(window)) - 1) * 0.1, window


def test_atom_score_is_unchanged() -> None:
    rng = random.Random(3)
    alphabets = [bytes(range(256)), b"\x00\xff \x90AB", bytes(range(0x41, 0x5B))]
    for _ in range(3000):
        alphabet = rng.choice(alphabets)
        run = bytes(rng.choice(alphabet) for _ in range(rng.choice((1, 2, 16, 17, 40, 100))))
        got, want = _score_run(run), _reference_score(run)
        assert got == want and repr(got[0]) == repr(want[0])


def test_cached_expressions_still_fail_every_time() -> None:
    assert parse_expr("0&1&2") == parse_expr("0&1&2")
    for _ in range(2):
        with pytest.raises(ValueError, match="logical expression"):
            parse_expr("0&&1")
    bad = "X;Engine:81-255,Target:0;0&1;414243\n"
    for _ in range(2):
        with pytest.raises(SignatureError) as info:
            parse_ldb(bad, "t.ldb", official=False)
        assert info.value.lineno == 1


def test_overlong_line_is_still_refused() -> None:
    """A line over the limit only through the sum of its fields is still refused."""
    good = "44d88612fea8a8f36de82e1278abb02f:68:Good:73"
    bad = "44d88612fea8a8f36de82e1278abb02f:68:" + "N" * (MAX_LINE - 100) + ":" + "0" * 200 + "73"
    text = f"{good}\n{bad}\n"
    with pytest.raises(SignatureError) as info:
        parse_hash_db(text, "x.hdb", "hdb", lambda b: None, official=False)
    assert info.value.lineno == 2 and "too long" in info.value.reason
