"""clamd.conf parsing rules (clamd-conf.md §2), error texts, and golden files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from vigil.config import SIZE_LIMIT, Config, clamd_message, defaults, load_config, parse_config
from vigil.config.options import BY_NAME
from vigil.config.parser import (
    BAD_FORMAT,
    BAD_NUMBER,
    EMPTY_ARGUMENT,
    EXAMPLE_LINE,
    MISSING_ARGUMENT,
    MISSING_QUOTE,
    UNKNOWN_OPTION,
)
from vigil.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("VIGIL_UPDATE_GOLDEN") == "1"


def parse(text: str) -> Config:
    return parse_config(text, "t.conf")


def fails(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def warnings_of(text: str) -> list[str]:
    messages: list[str] = []
    parse_config(text, "t.conf", on_warning=messages.append)
    return messages


# --- comments, blank and short lines (rule 3) ---


def test_empty_text_gives_defaults() -> None:
    cfg = parse("")
    assert cfg == Config(source="t.conf")
    assert cfg.explicit == frozenset()


def test_comments_blank_and_short_lines_are_skipped() -> None:
    text = "# comment\n\n   \n\t# indented comment\n  #\nx\n \ty\n#LogClean yes\nLogTime yes\n"
    cfg = parse(text)
    assert cfg.log_time is True
    assert cfg.log_clean is False
    assert cfg.explicit == {"LogTime"}


def test_two_characters_plus_newline_is_a_line() -> None:
    # "ab\n" is three bytes long, so it is parsed (and has no argument).
    err = fails("ab\n")
    assert (err.lineno, err.option, err.reason) == (1, "ab", MISSING_ARGUMENT)


def test_two_characters_at_end_of_file_are_skipped() -> None:
    assert parse("LogTime yes\nab").explicit == {"LogTime"}
    assert fails("LogTime yes\nabc").lineno == 2


def test_length_counts_bytes_not_characters() -> None:
    # "é" is two bytes in UTF-8: with the newline the line is three bytes, so it is parsed.
    assert fails("é\n").reason == MISSING_ARGUMENT


def test_no_inline_comments() -> None:
    assert fails("LogClean yes # c\n").reason == BAD_FORMAT
    assert fails("MaxThreads 5 # c\n").reason == BAD_FORMAT
    assert fails("MaxFileSize 10M  # c\n").reason == BAD_FORMAT
    assert parse("LogFile /var/log/a#b.log\n").log_file == "/var/log/a#b.log"


# --- the Example line (rule 4) ---


@pytest.mark.parametrize("line", ["Example", "Example\n", "ExampleFoo bar\n", "  \tExample yes\n"])
def test_example_line_stops_parsing(line: str) -> None:
    err = fails("# sample\nLogTime yes\n" + line + "Foo bar\n")
    assert (err.lineno, err.option, err.reason) == (3, "", EXAMPLE_LINE)
    assert str(err) == "t.conf:3: Please edit the example config file"
    assert clamd_message(err) == "ERROR: Please edit the example config file t.conf"


def test_example_must_be_the_start_of_the_line() -> None:
    assert parse("#Example\n").explicit == frozenset()
    assert fails("Exampl x\n").reason == UNKNOWN_OPTION
    assert fails("example yes\n").reason == UNKNOWN_OPTION


# --- name and argument (rules 5, 6, 12) ---


@pytest.mark.parametrize(
    "text",
    ["LocalSocket\n", "LocalSocket", "LocalSocket   \n", "LocalSocket \t \n", "MaxThreads\t"],
)
def test_missing_argument(text: str) -> None:
    err = fails("LogTime yes\n" + text)
    assert (err.lineno, err.reason) == (2, MISSING_ARGUMENT)
    assert err.option == text.strip()
    assert clamd_message(err) == "ERROR: Missing argument for option at t.conf:2"


def test_separators_and_trimming() -> None:
    cfg = parse("  LocalSocket\t \t/run/a b.sock \t \nUser  clam av\t\n")
    assert cfg.local_socket == "/run/a b.sock"
    assert cfg.user == "clam av"


def test_carriage_return_is_kept() -> None:
    # Only spaces, tabs and the newline are trimmed: a CRLF file breaks typed options.
    assert parse("LocalSocket /tmp/s\r\n").local_socket == "/tmp/s\r"
    err = fails("LogClean yes\r\n")
    assert (err.option, err.reason) == ("LogClean", BAD_FORMAT)


def test_nul_byte_ends_the_line() -> None:
    assert parse("LogClean yes\0garbage\n").log_clean is True
    err = fails("LogClean yes\nMaxThreads\0 5\n")
    assert (err.lineno, err.reason) == (2, MISSING_ARGUMENT)


# --- quotes (rule 7) ---


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ('"/run/with space.sock"', "/run/with space.sock"),
        ('"a"b"c', 'a"b'),  # up to the last quote
        ('"abc"  trailing', "abc"),  # text after the last quote is dropped
        ('" "', " "),
        ('/bin/notify "found %v"', '/bin/notify "found %v"'),  # not leading: kept
        ('"#x"', "#x"),
    ],
)
def test_quoted_strings(arg: str, value: str) -> None:
    assert parse(f"VirusEvent {arg}\n").virus_event == value


def test_quotes_apply_to_every_type() -> None:
    cfg = parse('MaxThreads "5"\nLogClean "yes"\nMaxFileSize "2M"\n')
    assert (cfg.max_threads, cfg.log_clean, cfg.max_file_size) == (5, True, 2 * 1024 * 1024)
    assert fails('MaxThreads "5 "\n').reason == BAD_FORMAT


def test_missing_closing_quote() -> None:
    err = fails('LogTime yes\nLocalSocket "/tmp/s\n')
    assert (err.lineno, err.option, err.reason) == (2, "LocalSocket", MISSING_QUOTE)
    assert clamd_message(err) == (
        "ERROR: Missing closing parenthesis in option LocalSocket at t.conf:2"
    )
    assert fails('LocalSocket "\n').reason == MISSING_QUOTE


def test_empty_quotes() -> None:
    err = fails('LocalSocket ""\n')
    assert (err.option, err.reason) == ("LocalSocket", EMPTY_ARGUMENT)
    assert clamd_message(err) == "ERROR: Empty argument for option LocalSocket at t.conf:1"


def test_quotes_are_checked_before_the_option_name() -> None:
    assert fails('NoSuchOption ""\n').reason == EMPTY_ARGUMENT
    assert fails('NoSuchOption "x\n').reason == MISSING_QUOTE


# --- option names (rules 8, 9) ---


@pytest.mark.parametrize(
    "name",
    [
        "Foo",
        "localsocket",  # names are case-sensitive
        "LOCALSOCKET",
        "DatabaseMirror",  # freshclam
        "MilterSocket",  # clamav-milter
        "DevCollectHashes",  # gone from 1.4.6 on
        "\ufeffLocalSocket",  # a byte-order mark is part of the name
        "help",  # clamd's command-line-only switches are not options
        "version",
        "debug",
        "config-file",
    ],
)
def test_unknown_option(name: str) -> None:
    err = fails(f"LogTime yes\n{name} x\n")
    assert (err.lineno, err.option, err.reason) == (2, name, UNKNOWN_OPTION)
    assert str(err) == f"t.conf:2: {name}: Unknown option"
    assert clamd_message(err) == f"ERROR: Parse error at t.conf:2: Unknown option {name}"


def test_long_command_line_spelling_is_accepted() -> None:
    cfg = parse("max-filesize 10M\ncross-fs no\nlog /var/log/clamd.log\ndatadir /db\n")
    assert cfg.max_file_size == 10 * 1024 * 1024
    assert cfg.cross_filesystems is False
    assert cfg.log_file == "/var/log/clamd.log"
    assert cfg.database_directory == "/db"
    assert cfg.explicit == {"MaxFileSize", "CrossFilesystems", "LogFile", "DatabaseDirectory"}


def test_long_spelling_errors_name_the_spelling_used() -> None:
    err = fails("max-files ten\n")
    assert (err.option, err.reason) == ("max-files", BAD_FORMAT)


@pytest.mark.parametrize("name", [o.name for o in BY_NAME.values() if o.deprecated])
def test_deprecated_option_is_ignored_with_a_warning(name: str) -> None:
    # The argument is not checked at all.
    assert warnings_of(f"LogTime yes\n{name} not-a-value\n") == [
        f"Ignoring deprecated option {name} at t.conf:2"
    ]
    assert parse(f"{name} 1\n").explicit == frozenset()


def test_deprecated_option_still_needs_an_argument() -> None:
    assert fails("ScanOnAccess\n").reason == MISSING_ARGUMENT


def test_deprecated_long_spelling_warns_with_the_option_name() -> None:
    assert warnings_of("detect-broken yes\n") == [
        "Ignoring deprecated option DetectBrokenExecutables at t.conf:1"
    ]


def test_warnings_go_to_the_log_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vigil.config.parser"):
        parse("ArchiveBlockMax yes\n")
    assert caplog.messages == ["Ignoring deprecated option ArchiveBlockMax at t.conf:1"]


# --- BOOL (§2.1) ---


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", True),
        ("YES", True),
        ("Yes", True),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("no", False),
        ("No", False),
        ("false", False),
        ("FaLsE", False),
        ("0", False),
    ],
)
def test_bool_values(text: str, value: bool) -> None:
    assert parse(f"FixStaleSocket {text}\n").fix_stale_socket is value
    assert parse(f"LogClean {text}\n").log_clean is value


@pytest.mark.parametrize(
    "text", ["on", "off", "y", "n", "2", "01", "yes no", "yes # c", "ye\u017f", "enabled", "-1"]
)
def test_bool_rejects(text: str) -> None:
    err = fails(f"LogClean {text}\n")
    assert (err.option, err.reason) == ("LogClean", BAD_FORMAT)
    assert str(err) == "t.conf:1: LogClean: Incorrect argument format"
    assert clamd_message(err) == "ERROR: Incorrect argument format for option LogClean"


# --- NUMBER (§2.1) ---


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("10", 10),
        ("007", 7),  # atoi() is always decimal
        ("2147483647", 2147483647),
        # atoi() returns a C int: larger values wrap around (observed on 1.4.6 via clamconf).
        ("2147483648", -2147483648),
        ("4294967297", 1),
        ("99999999999999999999", -1),
    ],
)
def test_number_values(text: str, value: int) -> None:
    assert parse(f"MaxThreads {text}\n").max_threads == value


@pytest.mark.parametrize("text", ["-1", "+1", "ten", "1.5", "0x10", "5 # c", "5 5", "1e3", "５"])
def test_number_rejects(text: str) -> None:
    err = fails(f"MaxThreads {text}\n")
    assert (err.option, err.reason) == ("MaxThreads", BAD_FORMAT)


def test_unset_number_defaults_are_none() -> None:
    cfg = parse("TCPSocket 3310\n")
    assert cfg.tcp_socket == 3310
    assert cfg.max_scan_time is None and cfg.fail_if_cvd_older_than is None
    assert parse("MaxScanTime 0\n").max_scan_time == 0


# --- SIZE / SIZE64 (§2.1) ---

K, M, G = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("10", 10),
        ("1k", K),
        ("1K", K),
        ("10m", 10 * M),
        ("10M", 10 * M),
        ("2g", 2 * G),
        ("2G", 2 * G),
        ("010", 8),  # a leading 0 means octal
        ("010K", 8 * K),
        ("00", SIZE_LIMIT),
        ("0", SIZE_LIMIT),  # 0 means "no limit"
        ("0M", SIZE_LIMIT),
        ("99999999999", 99999999999),
        ("8589934591G", 8589934591 * G),  # the largest multiple that fits
    ],
)
def test_size_values(text: str, value: int) -> None:
    assert parse(f"MaxFileSize {text}\n").max_file_size == value
    assert parse(f"MaxScanSize {text}\n").max_scan_size == value


@pytest.mark.parametrize(
    "text", ["10 M", "1.5M", "10MB", "-1", "M", "10M # c", "0x10", "10T", "1KK", "1 0"]
)
def test_size_rejects_by_syntax(text: str) -> None:
    err = fails(f"StreamMaxLength {text}\n")
    assert (err.option, err.reason) == ("StreamMaxLength", BAD_FORMAT)


@pytest.mark.parametrize("text", ["08", "09M", "0128", "019k"])
def test_size_rejects_non_octal_digits_after_a_leading_zero(text: str) -> None:
    err = fails(f"MaxFileSize {text}\n")
    assert (err.option, err.reason) == ("MaxFileSize", BAD_NUMBER)
    assert clamd_message(err) == "ERROR: Can't parse numerical argument for option MaxFileSize"


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999", "9999999999999M", "8589934592G", "9007199254740992k", "0" + "7" * 22],
)
def test_size_overflow_is_clamped_with_a_warning(text: str) -> None:
    messages: list[str] = []
    cfg = parse_config(f"MaxFileSize {text}\n", "t.conf", on_warning=messages.append)
    assert cfg.max_file_size == SIZE_LIMIT
    assert messages == [
        "Numerical value for option MaxFileSize too high, resetting to 9223372036854775807"
    ]


def test_octal_overflow_wins_over_the_bad_digit() -> None:
    # strtoll() reports the overflow, so the leftover 8 is never looked at.
    cfg = parse_config("MaxFileSize 0" + "7" * 22 + "8\n", "t.conf", on_warning=lambda _: None)
    assert cfg.max_file_size == SIZE_LIMIT


# --- STRING enums (§2.1) ---


def test_enum_check_ignores_case_and_keeps_the_text() -> None:
    cfg = parse("BytecodeSecurity paranoid\nBytecodeMode forcejit\n")
    assert cfg.bytecode_security == "paranoid"
    assert cfg.bytecode_mode == "forcejit"


@pytest.mark.parametrize(
    ("name", "text"),
    [("BytecodeSecurity", "Foo"), ("BytecodeSecurity", "TrustSignedX"), ("BytecodeMode", "JIT")],
)
def test_enum_rejects(name: str, text: str) -> None:
    assert fails(f"{name} {text}\n").reason == BAD_FORMAT


def test_plain_strings_take_anything() -> None:
    cfg = parse("LocalSocketMode not-octal\nLogFacility whatever\nLocalSocketGroup 12ab\n")
    assert cfg.local_socket_mode == "not-octal"
    assert cfg.log_facility == "whatever"


# --- repetition (§2.2) ---


def test_repeatable_options_accumulate_in_order() -> None:
    text = (
        "TCPAddr 127.0.0.1\nExcludePath ^/proc/\nTCPAddr ::1\nExcludePath ^/sys/\n"
        "OnAccessExcludeUID 0\nOnAccessExcludeUID 107\nIncludePUA Win\n"
    )
    cfg = parse(text)
    assert cfg.tcp_addr == ("127.0.0.1", "::1")
    assert cfg.exclude_path == ("^/proc/", "^/sys/")
    assert cfg.on_access_exclude_uid == (0, 107)
    assert cfg.include_pua == ("Win",)


def test_first_occurrence_wins() -> None:
    cfg = parse("MaxFileSize 10M\nMaxFileSize 20M\nLogFile /a\nLogFile /b\nLogClean no\n"
                "LogClean yes\n")  # fmt: skip
    assert cfg.max_file_size == 10 * M
    assert cfg.log_file == "/a"
    assert cfg.log_clean is False


def test_later_occurrences_are_still_checked() -> None:
    err = fails("MaxThreads 5\nMaxThreads five\n")
    assert (err.lineno, err.reason) == (2, BAD_FORMAT)


def test_long_spelling_and_name_share_one_slot() -> None:
    cfg = parse("max-files 7\nMaxFiles 8\nexclude-pua A\nExcludePUA B\n")
    assert cfg.max_files == 7
    assert cfg.exclude_pua == ("A", "B")


def test_setting_the_default_still_counts_as_set() -> None:
    cfg = parse("MaxQueue 100\n")
    assert cfg.max_queue == defaults().max_queue
    assert cfg.is_set("MaxQueue") and not cfg.is_set("MaxThreads")


# --- physical lines (rule 1) ---


def test_long_line_is_split_after_1023_bytes() -> None:
    # The second piece starts with "aaa..." and has no argument; it counts as line 2.
    err = fails("LocalSocket /" + "a" * 1100 + "\nFoo x\n")
    assert (err.lineno, err.reason) == (2, MISSING_ARGUMENT)


def test_split_piece_can_be_an_option_of_its_own() -> None:
    first = "LocalSocket /" + "a" * 1009 + " "  # exactly 1023 bytes
    cfg = parse(first + "MaxThreads 5\nLogTime yes\n")
    assert cfg.local_socket == "/" + "a" * 1009
    assert cfg.max_threads == 5
    err = fails(first + "MaxThreads 5\nFoo x\n")
    assert err.lineno == 3


def test_split_counts_bytes() -> None:
    # 600 two-byte characters: the split falls inside the value after 1023 bytes.
    err = fails("User " + "é" * 600 + "\n")
    assert (err.lineno, err.reason) == (2, MISSING_ARGUMENT)


# --- files ---


def test_load_config_reads_bytes_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "clamd.conf"
    path.write_bytes(b"LocalSocket /tmp/\xff.sock\r\nLogTime yes\n")
    cfg = load_config(path)
    assert cfg.source == str(path)
    assert cfg.local_socket is not None
    assert os.fsencode(cfg.local_socket) == b"/tmp/\xff.sock\r"
    assert cfg.log_time is True


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "clamd.conf"
    path.write_text("LogTime yes\nMaxThreads ten\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}:2: MaxThreads: Incorrect argument format"


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.conf")
    err = info.value
    assert (err.lineno, err.option) == (0, "")
    assert err.reason == "Can't open/parse the config file (No such file or directory)"
    assert clamd_message(err) is None


def test_load_config_refuses_a_directory(tmp_path: Path) -> None:
    # clamd 1.4.6 reads a directory as an empty file; Vigil says what is wrong instead.
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_clamd_message_is_none_for_foreign_reasons() -> None:
    assert clamd_message(ConfigError("x", 1, "Opt", "something else")) is None


# --- golden files: tests/config/golden/<case>.conf -> <case>.out ---


def render(name: str, data: bytes) -> str:
    """What a golden .out file holds: warnings, then the error or the options given."""
    lines: list[str] = []
    try:
        cfg = parse_config(
            data.decode("utf-8", "surrogateescape"),
            name,
            on_warning=lambda m: lines.append(f"warning: {m}"),
        )
    except ConfigError as err:
        lines.append(f"error: {err}")
        lines.append(f"clamd: {clamd_message(err)}")
    else:
        for opt in BY_NAME.values():
            if cfg.is_set(opt.name):
                lines.append(f"{opt.name} = {cfg.get(opt.name)!r}")
    return "\n".join(lines) + "\n"


GOLDEN_CASES = sorted(GOLDEN.glob("*.conf"))


def test_golden_cases_exist() -> None:
    assert len(GOLDEN_CASES) >= 6


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda p: p.stem)
def test_golden(case: Path) -> None:
    actual = render(case.name, case.read_bytes())
    expected_file = case.with_suffix(".out")
    if UPDATE_GOLDEN:
        expected_file.write_text(actual)
    assert actual == expected_file.read_text()
