"""The C parse of canonical hash lines (``vigil.native._hashparse``) against the Python tiers.

The C code takes only the common form and answers "not mine" for anything else, leaving the
block to the Python tiers; so on any input, valid or not, a load with it must give exactly
the batches, counts and errors (file, line, reason) of a load without it.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
import pytest

from vigil.engine.matcher.hashes import HashBuilder, NameTable, unique_sorted
from vigil.engine.signatures import hdb
from vigil.engine.signatures.common import MAX_LINE
from vigil.engine.signatures.hdb import HASH_KINDS, HashBatch, parse_hash_db
from vigil.errors import SignatureError
from vigil.native import _hashparse

HEX = "0123456789abcdefABCDEF"
NAME_CHARS = "ABCXYZabcxyz0189._-() \xe9\xff"
H32 = "44d88612fea8a8f36de82e1278abb02f"

Outcome = tuple[object, ...]


def _good(rng: random.Random, size_first: bool, star_ok: bool) -> str:
    width = rng.choice((32, 32, 40, 64))
    digest = "".join(rng.choice(HEX) for _ in range(width))
    fields = rng.choice((3, 4, 5))
    minfl = rng.choice(["", "0", "73", "216", "217", "0073", "999999999"])
    maxfl = rng.choice(["", "0", "215", "216", "300"])
    size = str(rng.choice([1, 9, 68, 4096, 0xFFFFFFFE, rng.randrange(1, 1 << 32 - 1)]))
    if rng.random() < 0.1 and len(size) < 9:
        size = "0" + size
    if fields >= 4 and minfl and int(minfl) >= 73 and rng.random() < 0.3 and star_ok:
        size = "*"
    name = "".join(rng.choice(NAME_CHARS) for _ in range(rng.randrange(1, 24)))
    cols = [size, digest] if size_first else [digest, size]
    cols += [name, minfl, maxfl][: fields - 2]
    return ":".join(cols)


# each turns a good line into one the C code must leave to the Python tiers (valid or not)
MALFORM = [
    lambda ln: "",  # blank line
    lambda ln: "\r",
    lambda ln: " ",
    lambda ln: ln + "\x00",
    lambda ln: ln.replace(":", "::", 1),
    lambda ln: ln + ":1:2:3",
    lambda ln: ln.split(":")[0],
    lambda ln: ln.rsplit(":", 1)[0] + ":",
    lambda ln: "g" + ln[1:],
    lambda ln: ln[1:],
    lambda ln: "0" + ln,
    lambda ln: ln.replace(":", " :", 1),
    lambda ln: ln + "\r\r",
    lambda ln: ln[:5] + "\r" + ln[5:],
    lambda ln: ln + " (Clam)",
    lambda ln: ln + " (Clam) x",
    lambda ln: ln + ":",
    lambda ln: ln + ": 73",  # valid: levels may have blanks around them
    lambda ln: ln + ":73 ",
    lambda ln: ln + ":7x",
    lambda ln: ln + ":1234567890",  # valid: a level of any length
    lambda ln: ln + "::x",
]


def _sized(size_first: bool, size: str, rest: str = "N") -> str:
    return f"{size}:{H32}:{rest}" if size_first else f"{H32}:{size}:{rest}"


def _bad_size(rng: random.Random, size_first: bool) -> str:
    size = rng.choice(["0", "00", "4294967295", "99999999999", "000000000001", "*", "-1", "+5"])
    size = rng.choice([size, "1 ", "\xb2", "1e3", ""])
    rest = rng.choice(["N", "N:72", "N:73", "N::", "N:abc"])
    return _sized(size_first, size, rest)


def _text(rng: random.Random, size_first: bool, star_ok: bool, bad: float) -> str:
    lines = []
    for _ in range(rng.randrange(1, 40)):
        line = _good(rng, size_first, star_ok)
        r = rng.random()
        if r < bad:
            line = rng.choice(MALFORM)(line)
        elif r < 2 * bad:
            line = _bad_size(rng, size_first)
        elif r < 2 * bad + 0.05:
            line = rng.choice(["#", "# a comment: with colons", "#\x00\r bytes", "#" + line])
        elif r < 2 * bad + 0.1:
            line += "\r"
        lines.append(line)
    text = "\n".join(lines)
    return text + "\n" if rng.random() < 0.8 else text


def _outcome(data: bytes | Path, suffix: str, official: bool, ignored: frozenset[str]) -> Outcome:
    got: list[HashBatch] = []
    try:
        count = parse_hash_db(data, "t.x", suffix, got.append, official=official, ignored=ignored)
    except SignatureError as exc:
        return ("error", exc.path, exc.lineno, exc.reason, str(exc))
    rows = [
        (b.kind, b.width, b.digests, b.sizes.tolist(), b.name_blob, b.name_ends.tolist())
        for b in got
    ]
    assert all(b.sizes.dtype == np.uint32 and b.name_ends.dtype == np.uint64 for b in got)
    return ("ok", count, rows)


def _both(
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    suffix: str,
    official: bool,
    ignored: frozenset[str],
) -> tuple[Outcome, Outcome, int]:
    """(with the C parse, Python tiers only, blocks the C parse took)."""
    taken = 0
    real = hdb._Native.parse

    def counting(
        self: hdb._Native, data: bytes | bytearray, start: int, end: int
    ) -> tuple[int, list[HashBatch]] | None:
        nonlocal taken
        got = real(self, data, start, end)
        taken += got is not None
        return got

    monkeypatch.setattr(hdb._Native, "parse", counting)
    native = _outcome(data, suffix, official, ignored)
    monkeypatch.setattr(hdb._Native, "parse", lambda self, data, start, end: None)
    plain = _outcome(data, suffix, official, ignored)
    monkeypatch.setattr(hdb._Native, "parse", real)
    # read from the file a block at a time: the same batch contents and errors
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.x"
        path.write_bytes(data)
        streamed = _outcome(path, suffix, official, ignored)
    assert _merged(streamed) == _merged(native)
    return native, plain, taken


def _merged(outcome: Outcome) -> Outcome:
    """The outcome with each width's batches joined (cuts differ when a file is read)."""
    if outcome[0] != "ok":
        return outcome
    by: dict[tuple[object, object], list[object]] = {}
    for kind, width, digests, sizes, blob, ends in outcome[2]:  # type: ignore[attr-defined]
        got = by.setdefault((kind, width), [b"", [], b"", []])
        base = len(got[2])  # type: ignore[arg-type]
        got[0] += digests  # type: ignore[operator]
        got[1] += sizes  # type: ignore[operator]
        got[2] += blob  # type: ignore[operator]
        got[3] += [base + e for e in ends]  # type: ignore[operator]
    return ("ok", outcome[1], sorted(by.items(), key=repr))


@pytest.mark.parametrize("seed", range(60))
def test_native_and_python_parses_agree(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    suffix = rng.choice(sorted(HASH_KINDS))
    kind, size_first = HASH_KINDS[suffix]
    bad = rng.choice((0.0, 0.0, 0.01, 0.05, 0.2))
    text = _text(rng, size_first, kind != "import" or rng.random() < 0.5, bad)
    if rng.random() < 0.1:
        text = text.replace("\n", "\r\n")
    data = text.encode("latin-1")
    official = rng.random() < 0.5
    names = [ln.split(":")[2] for ln in text.split("\n") if ln.count(":") >= 2]
    ignored = (
        frozenset(rng.sample(names, min(2, len(names)))) if rng.random() < 0.3 else frozenset()
    )
    if rng.random() < 0.2:
        ignored |= {"\u20ac unencodable", "N"}
    # whole file in one block, then many small blocks (C and Python blocks mixed)
    for block in (1 << 30, rng.choice((0, 1, 50, 300))):
        monkeypatch.setattr(hdb, "BLOCK", block)
        native, plain, _ = _both(monkeypatch, data, suffix, official, ignored)
        assert native == plain


def test_native_parse_takes_the_canonical_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common shapes are the C code's (no fallback) and give the Python result."""
    for seed in range(30):
        rng = random.Random(10_000 + seed)
        suffix = rng.choice(sorted(HASH_KINDS))
        kind, size_first = HASH_KINDS[suffix]
        text = _text(rng, size_first, True, 0.0)
        if rng.random() < 0.3 and "\r" not in text:
            text = text.replace("\n", "\r\n")
        data = text.encode("latin-1")
        native, plain, taken = _both(monkeypatch, data, suffix, True, frozenset())
        assert taken == 1
        assert native == plain and native[0] == "ok"


@pytest.mark.parametrize("block", [0, 1, 60, 1 << 30])
@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (f"{H32[:-1]}g:68:X", "bad hash"),
        (f"{H32}:0:X", "bad size"),
        (f"{H32}:4294967295:X", "bad size"),
        (f"{H32}:12345678901:X", "bad size"),
        (f"{H32}:*:X:72", "size '*'"),
        (f"{H32}:*:X", "size '*'"),
        (f"{H32}:68:", "empty signature name"),
        (f"{H32}:68:X:7a", "functionality level"),
        (f"{H32}:68:X:1:2:3", "expected 3 to 5"),
        (f"{H32}:68", "expected 3 to 5"),
        (f"{H32}:68:X\x00", "NUL"),
        ("", "blank line"),
    ],
)
def test_errors_are_the_python_ones(
    block: int, bad: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad line after C-parsed blocks is named by its line in the file."""
    monkeypatch.setattr(hdb, "BLOCK", block)
    good = f"{H32}:68:Good:73:255"
    lines = [good, "# comment", good + "\r", good] * 4 + [bad, good]
    data = ("\n".join(lines) + "\n").encode("latin-1")
    native, plain, _ = _both(monkeypatch, data, "hdb", False, frozenset())
    assert native == plain
    assert native[:3] == ("error", "t.x", 17) and reason in str(native[3])


def test_overlong_and_unterminated_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    long_name = "N" * (MAX_LINE - len(H32) - 4)
    fits = f"{H32}:68:{long_name}"
    assert len(fits) == MAX_LINE
    for data in (
        f"{fits}\n{H32}:68:X".encode(),  # the longest line, and no newline at the end
        f"{fits}N\n".encode(),  # one byte too many
        f"{H32}:68:X\n{H32}:6".encode(),  # the file ends inside the size
        f"{H32}:68:X\n{H32[:20]}".encode(),  # ... inside the hash
    ):
        native, plain, _ = _both(monkeypatch, data, "hdb", True, frozenset())
        assert native == plain


def test_ignored_names_are_dropped_as_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    data = "".join(f"{H32}:{i + 1}:Name-{i % 7}\xe9\n" for i in range(50)).encode("latin-1")
    ignored = frozenset({"Name-3\xe9", "Name-5", "\u0100", ""})
    native, plain, taken = _both(monkeypatch, data, "hsb", False, ignored)
    assert taken == 1 and native == plain
    assert native[0] == "ok" and native[1] == 50 - 7


def test_parse_block_direct() -> None:
    """Bounds are checked; an unusual line is reported by its offset; end cuts the input."""
    line = f"{H32}:68:N\n".encode()
    data = line * 3
    args = (False, 73, 216, MAX_LINE, 0xFFFFFFFE, b"", ())
    for start, end in ((-1, 5), (5, 4), (0, len(data) + 1)):
        with pytest.raises(ValueError):
            _hashparse.parse_block(data, start, end, *args)
    assert _hashparse.parse_block(data, 0, 0, *args) == (0, [])
    assert _hashparse.parse_block(b"#\n#x\n#", 0, 6, *args) == (2, [])
    got = _hashparse.parse_block(data, len(line), len(data), *args)
    assert isinstance(got, tuple) and got[0] == 2 and len(got[1]) == 1
    width, digests, sizes, names, ends = got[1][0]
    assert (width, digests, names) == (16, bytes.fromhex(H32) * 2, b"NN")
    assert np.frombuffer(sizes, np.uint32).tolist() == [68, 68]
    assert np.frombuffer(ends, np.uint64).tolist() == [1, 2]
    assert _hashparse.parse_block(data, 0, len(line) - 3, *args) == len(line) * 0  # "6"-less
    bad = line + b"x" + line
    assert _hashparse.parse_block(bad, 0, len(bad), *args) == len(line)
    with pytest.raises(TypeError):
        _hashparse.parse_block(data, 0, len(data), *args[:-1], ("str",))


def test_builder_fast_paths() -> None:
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 1000):
        values = rng.integers(0, 50, n).astype(np.uint32)
        assert unique_sorted(values).tolist() == np.unique(values).tolist()
    names = NameTable()
    builder = HashBuilder(names)
    sizes = np.array([5, 0, 5], dtype=np.uint32)
    ends = np.array([1, 3, 6], dtype=np.uint64)
    builder.add(HashBatch("file", 16, bytes(range(48)), sizes, b"abbccc", ends))
    store = builder.build()
    table = store.tables[("file", 16)]
    assert table.size_set.tolist() == [0, 5] and table.any_size
    assert [names[i] for i in table.names.tolist()] == ["a", "bb", "ccc"]


@pytest.mark.parametrize("width", [3, 16, 20, 32])
def test_sort_digests_is_a_stable_sort(width: int) -> None:
    """Against Python's stable sort: duplicates, one crowded bucket, rows split in parts."""
    rng = np.random.default_rng(width)
    for n in (0, 1, 2, 17, 300, 6000):
        pool = rng.integers(0, 256, (max(n // 3, 1), width), dtype=np.uint8)
        rows = pool[rng.integers(0, pool.shape[0], n)]
        if n > 100:
            rows[: n // 2, :3] = 7  # one bucket of n / 2 rows (the merge sort)
            rows[: n // 4, 3:] = rng.integers(0, 3, (n // 4, width - 3), dtype=np.uint8)
        raw = rows.tobytes()
        cut = rng.integers(0, n + 1) * width
        order, ordered = _hashparse.sort_digests([raw[:cut], b"", raw[cut:]], width)
        want = sorted(range(n), key=lambda i: (raw[i * width : (i + 1) * width], i))
        assert np.frombuffer(order, np.int64).tolist() == want
        assert ordered == b"".join(raw[i * width : (i + 1) * width] for i in want)
    with pytest.raises(ValueError):
        _hashparse.sort_digests([b"12345"], 4)
    with pytest.raises(ValueError):
        _hashparse.sort_digests([], 2)
