"""Differential tests: the same clamd.conf texts through Debian's clamd/clamconf and Vigil.

``clamd -c FILE -V`` parses the file and then only prints the version (it reads a database
header at most, never loads signatures), so it shows accept/reject and every parser message.
``clamconf -c DIR`` prints the value of every option, which checks conversions and defaults.
Skipped when ClamAV is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vigil.config import OPTIONS, Config, OptionValue, clamd_message, parse_config
from vigil.config.options import BY_NAME
from vigil.errors import ConfigError

CLAMD = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin:/sbin")
CLAMCONF = shutil.which("clamconf")
GOLDEN = Path(__file__).parent / "golden"
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}

pytestmark = [
    pytest.mark.differential,
    pytest.mark.skipif(CLAMD is None, reason="Debian's clamd is not installed"),
]
needs_clamconf = pytest.mark.skipif(CLAMCONF is None, reason="clamconf is not installed")


def clamd_check(tmp: Path, name: str, data: bytes) -> tuple[bool, list[str]]:
    """Run the real clamd's parser on ``data``: (accepted, stderr lines)."""
    assert CLAMD is not None
    (tmp / name).write_bytes(data)
    proc = subprocess.run(
        [CLAMD, "-c", name, "-V"], cwd=tmp, env=ENV, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr
    stderr = proc.stderr.decode("utf-8", "surrogateescape").splitlines()
    return proc.returncode == 0, stderr


def vigil_check(name: str, data: bytes) -> tuple[bool, list[str]]:
    """Vigil's verdict on ``data`` with the stderr lines clamd would print for it."""
    lines: list[str] = []
    try:
        parse_config(
            data.decode("utf-8", "surrogateescape"),
            name,
            on_warning=lambda m: lines.append(f"WARNING: {m}"),
        )
    except ConfigError as err:
        message = clamd_message(err)
        assert message is not None
        lines += [message, f"ERROR: Can't open/parse the config file {name}"]
        return False, lines
    return True, lines


def clamconf_values(tmp: Path, data: bytes) -> dict[str, str]:
    """Every clamd option as clamconf prints it: ``disabled`` or ``"v1", "v2"``."""
    assert CLAMCONF is not None
    folder = tmp / "clamconf"
    folder.mkdir(exist_ok=True)
    (folder / "clamd.conf").write_bytes(data)
    proc = subprocess.run(
        [CLAMCONF, "-c", str(folder)], env=ENV, capture_output=True, timeout=30, check=True
    )
    out = proc.stdout.decode("utf-8", "surrogateescape").split("\n")
    start = out.index("Config file: clamd.conf") + 2
    values: dict[str, str] = {}
    for line in out[start : out.index("", start)]:
        if line.startswith("***"):  # "*** X is DEPRECATED ***"
            continue
        name, sep, rest = line.partition(" = ")
        if not sep:
            name, _, rest = line.partition(" ")
        values[name] = rest
    return values


def clamconf_text(value: OptionValue) -> str:
    """``value`` the way clamconf shows it: empty, false, 0 and -1 are ``disabled``."""
    if isinstance(value, tuple):
        if not value or value[0] in (0, -1):
            return "disabled"
        return ", ".join(f'"{v}"' for v in value)
    if value is None or value is False or (isinstance(value, int) and value in (0, -1)):
        return "disabled"
    return '"yes"' if value is True else f'"{value}"'


@pytest.fixture(scope="session")
def oracle_version(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int]:
    tmp = tmp_path_factory.mktemp("version")
    accepted, _ = clamd_check(tmp, "v.conf", b"LocalSocket /tmp/s\n")
    assert accepted
    assert CLAMD is not None
    out = subprocess.run(
        [CLAMD, "-c", "v.conf", "-V"], cwd=tmp, env=ENV, capture_output=True, check=True
    ).stdout.decode()
    found = re.match(r"ClamAV (\d+)\.(\d+)", out)
    assert found is not None, out
    return int(found.group(1)), int(found.group(2))


def vigil_values(cfg: Config, version: tuple[int, int]) -> dict[str, str]:
    return {
        opt.name: clamconf_text(cfg.get(opt.name))
        for opt in OPTIONS
        if not opt.deprecated and opt.since <= version
    }


def b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


SOCKET = b"LocalSocket /tmp/s\n"
CASES: dict[str, bytes] = {
    "empty": b"",
    "comments": b"# c\n\n  \n\t# x\nx\n" + SOCKET,
    "two-chars-and-newline": b"ab\n",
    "two-chars-at-eof": SOCKET + b"ab",
    "three-chars-at-eof": SOCKET + b"abc",
    "two-byte-char": b("\u00e9\n"),
    "example": b"# c\nExample\n",
    "example-suffix": b"ExampleFoo bar\n",
    "example-indented": b"  \tExample\n",
    "example-prefix-only": b"Exampl x\n",
    "missing-argument": b"LocalSocket\n",
    "missing-argument-spaces": b"LocalSocket   \n",
    "missing-argument-tab-eof": b"LocalSocket\t",
    "quoted": b'LocalSocket "/tmp/a b"\n',
    "quote-to-last": b'VirusEvent "a"b"c\n',
    "quote-inside": b'VirusEvent /bin/notify "found %v"\n',
    "quote-unclosed": b'LocalSocket "abc\n',
    "quote-alone": b'LocalSocket "\n',
    "quote-empty": b'LocalSocket ""\n',
    "quote-empty-unknown": b'Foo ""\n',
    "quoted-number": b'MaxThreads "5"\n',
    "quoted-number-space": b'MaxThreads "5 "\n',
    "unknown": b"Foo bar\n",
    "lowercase-name": SOCKET + b"localsocket /x\n",
    "freshclam-option": b"DatabaseMirror db.local.clamav.net\n",
    "milter-option": b"MilterSocket /tmp/m\n",
    "removed-dev-option": b"DevCollectHashes yes\n",
    "byte-order-mark": b"\xef\xbb\xbf" + SOCKET,
    "long-spellings": b"max-filesize 10M\ncross-fs no\nlog /tmp/x.log\ndatadir /nonexistent\n",
    "long-spelling-bad": b"max-files ten\n",
    "deprecated": SOCKET + b"DetectBrokenExecutables garbage\nArchiveMaxFiles 5\n",
    "deprecated-long-spelling": b"detect-broken yes\n",
    "deprecated-no-argument": b"MailMaxRecursion\n",
    "deprecated-then-error": b"ScanOnAccess yes\nMaxThreads x\n",
    "crlf-string": b"LocalSocket /tmp/s\r\n",
    "crlf-bool": b"LogClean yes\r\n",
    "long-line": b"LocalSocket /" + b"a" * 1100 + b"\nFoo x\n",
    "split-exactly": b"LocalSocket /" + b"a" * 1009 + b" MaxThreads 5\n",
    "split-multibyte": b("User " + "\u00e9" * 600 + "\n"),
    "nul-byte": b"LogClean yes\x00garbage\nMaxThreads\x00 5\n",
    "later-duplicate-checked": b"MaxThreads 5\nMaxThreads five\n",
    "inline-comment-string": b"LogFile /tmp/a#b.log\n",
    "enum-case": b"BytecodeSecurity paranoid\nBytecodeMode forcejit\n",
    "enum-bad": b"BytecodeSecurity Foo\n",
    "enum-bad-mode": b"BytecodeMode JIT\n",
}
# Example values in clamd's generated sample that its own parser rejects.
BROKEN_EXAMPLES = {"FailIfCvdOlderThan": "-1", "OnAccessCurlTimeout": "10000L"}
for _name, _value in BROKEN_EXAMPLES.items():
    CASES[f"sample-{_name}"] = b(f"{_name} {_value}\n")
for _value in ["yes", "YES", "true", "TRUE", "1", "no", "FaLsE", "0"]:
    CASES[f"bool-{_value}"] = b(f"LogClean {_value}\n")
for _value in ["on", "off", "y", "2", "yes # c", "yes no", "01"]:
    CASES[f"bool-bad-{_value}"] = b(f"LogClean {_value}\n")
for _value in ["0", "007", "2147483648", "4294967297", "99999999999999999999"]:
    CASES[f"number-{_value}"] = b(f"MaxThreads {_value}\n")
for _value in ["-1", "+1", "ten", "1.5", "0x10", "5 # c"]:
    CASES[f"number-bad-{_value}"] = b(f"MaxThreads {_value}\n")
for _value in [
    "10M", "10m", "1k", "1G", "2g", "010", "010K", "0", "0M", "08", "09M", "10 M", "1.5M",
    "10MB", "-1", "10M # c", "99999999999999999999", "9999999999999M", "8589934591G",
    "8589934592G", "0" + "7" * 22, "0" + "7" * 22 + "8",
]:  # fmt: skip
    CASES[f"size-{_value}"] = b(f"MaxFileSize {_value}\n")
    CASES[f"size64-{_value}"] = b(f"MaxScanSize {_value}\n")
for _path in sorted(GOLDEN.glob("*.conf")):
    CASES[f"golden-{_path.stem}"] = _path.read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_verdict_and_messages(name: str, tmp_path: Path) -> None:
    data = CASES[name]
    assert vigil_check("t.conf", data) == clamd_check(tmp_path, "t.conf", data)


ACCEPTED_VALUE_CASES = [
    "comments",
    "quoted",
    "quote-to-last",
    "quote-inside",
    "quoted-number",
    "long-spellings",
    "crlf-string",
    "split-exactly",
    "split-multibyte",
    "inline-comment-string",
    "enum-case",
    "golden-debian-style",
    "golden-whitespace-quotes",
    "golden-sizes-numbers",
    "golden-aliases-deprecated",
] + sorted(n for n in CASES if n.startswith(("bool-", "number-", "size")) and "bad" not in n)


@needs_clamconf
@pytest.mark.parametrize("name", ACCEPTED_VALUE_CASES)
def test_same_values(name: str, tmp_path: Path, oracle_version: tuple[int, int]) -> None:
    data = CASES[name]
    try:
        cfg = parse_config(
            data.decode("utf-8", "surrogateescape"), "t.conf", on_warning=lambda _: None
        )
    except ConfigError:
        # Rejected by both parsers (checked above); nothing to compare.
        assert not clamd_check(tmp_path, "t.conf", data)[0]
        return
    assert vigil_values(cfg, oracle_version) == clamconf_values(tmp_path, data)


@needs_clamconf
def test_same_defaults(tmp_path: Path, oracle_version: tuple[int, int]) -> None:
    cfg = parse_config("", "t.conf")
    assert vigil_values(cfg, oracle_version) == clamconf_values(tmp_path, b"")


@needs_clamconf
def test_generated_sample_with_every_example_value(
    tmp_path: Path, oracle_version: tuple[int, int]
) -> None:
    """clamconf's generated clamd.conf, with every commented example line switched on.

    Except the examples clamd's own syntax check rejects (see BROKEN_EXAMPLES).
    """
    assert CLAMCONF is not None
    sample = subprocess.run(
        [CLAMCONF, "-g", "clamd.conf"], env=ENV, capture_output=True, timeout=30, check=True
    ).stdout
    lines = []
    for line in sample.split(b"\n"):
        if line.strip() == b"Example":
            continue
        found = re.match(rb"#([A-Za-z0-9]+) +\S", line)
        if found and found.group(1).decode() in BY_NAME.keys() - BROKEN_EXAMPLES:
            line = line[1:]
        lines.append(line)
    data = b"\n".join(lines)
    accepted, messages = clamd_check(tmp_path, "t.conf", data)
    assert (accepted, messages) == vigil_check("t.conf", data)
    assert accepted
    cfg = parse_config(data.decode(), "t.conf")
    assert len(cfg.explicit) > 100
    assert vigil_values(cfg, oracle_version) == clamconf_values(tmp_path, data)


def test_options_newer_than_the_oracle_are_unknown_to_it(
    tmp_path: Path, oracle_version: tuple[int, int]
) -> None:
    """Vigil takes the spec's 1.5+ options; an older clamd refuses them (a known difference)."""
    for opt in OPTIONS:
        if opt.since <= oracle_version:
            continue
        text = b(f"{opt.name} {'/tmp' if opt.type.value == 'path' else 'yes'}\n")
        accepted, messages = clamd_check(tmp_path, "t.conf", text)
        assert not accepted
        assert messages[0] == f"ERROR: Parse error at t.conf:1: Unknown option {opt.name}"
        assert vigil_check("t.conf", text) == (True, [])


@pytest.mark.parametrize("switch", ["help no", "gen-json no", "config-file /x"])
def test_command_line_switches_in_the_file(switch: str, tmp_path: Path) -> None:
    """A known difference: clamd takes its command-line-only switches as file options too
    (``debug yes`` in the file turns on debug mode); Vigil calls them unknown options."""
    text = SOCKET + b(switch + "\n")
    assert clamd_check(tmp_path, "t.conf", text) == (True, [])
    assert vigil_check("t.conf", text)[0] is False
