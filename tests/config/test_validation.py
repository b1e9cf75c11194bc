"""Start-up checks on a parsed configuration (clamd-conf.md §2.3) and the socket helpers."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

from vigil.config import Config, listens_on_tcp, parse_config, socket_gid, socket_mode, validate

SOCKET = "LocalSocket /tmp/vigil.sock\n"
NO_GROUP = "vigil-no-such-group-xyz"


def problems(text: str) -> list[str]:
    return validate(parse_config(text, "t.conf"))


def test_minimal_configurations_are_valid() -> None:
    assert problems(SOCKET) == []
    assert problems("TCPSocket 3310\nTCPAddr 127.0.0.1\n") == []


def test_no_listener() -> None:
    message = "Please define server type (local and/or TCP)."
    assert problems("") == [message]
    assert validate(Config()) == [message]
    # A port of 0 (or one that wraps to -1) counts as no TCP socket, as in clamd.
    assert problems("TCPSocket 0\n") == [message]
    assert problems("TCPSocket 4294967295\n") == [message]


def test_listens_on_tcp() -> None:
    assert listens_on_tcp(parse_config("TCPSocket 3310\n", "t"))
    assert not listens_on_tcp(parse_config("TCPSocket 0\n", "t"))
    assert not listens_on_tcp(Config())


def test_log_file_must_be_absolute() -> None:
    assert problems(SOCKET + "LogFile clamd.log\n") == ["LogFile requires full path."]
    assert problems(SOCKET + "LogFile /var/log/clamd.log\n") == []


def test_log_facility_is_checked_only_with_syslog() -> None:
    assert problems(SOCKET + "LogFacility LOG_NOPE\n") == []
    assert problems(SOCKET + "LogSyslog yes\nLogFacility LOG_NOPE\n") == [
        "LogFacility: LOG_NOPE: No such facility."
    ]
    assert problems(SOCKET + "LogSyslog yes\nLogFacility log_mail\n") == [
        "LogFacility: log_mail: No such facility."
    ]
    assert problems(SOCKET + "LogSyslog yes\nLogFacility LOG_MAIL\n") == []
    assert problems(SOCKET + "LogSyslog yes\n") == []  # LOG_LOCAL6


@pytest.mark.parametrize(("low", "high"), [(1023, 2048), (3000, 2000), (1024, 65536), (0, 0)])
def test_stream_ports(low: int, high: int) -> None:
    text = SOCKET + f"StreamMinPort {low}\nStreamMaxPort {high}\n"
    assert problems(text) == [f"Invalid StreamMinPort/StreamMaxPort: {low}, {high}"]


def test_stream_ports_at_the_bounds() -> None:
    assert problems(SOCKET + "StreamMinPort 1024\nStreamMaxPort 65535\n") == []
    assert problems(SOCKET + "StreamMinPort 5000\nStreamMaxPort 5000\n") == []


def test_pua_lists_conflict_only_when_pua_is_loaded() -> None:
    both = SOCKET + "ExcludePUA Win\nIncludePUA Tool\n"
    assert problems(both) == []
    assert problems(both + "DetectPUA yes\n") == [
        "ExcludePUA and IncludePUA cannot be used at the same time"
    ]


def test_temporary_directory_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert problems(SOCKET + f"TemporaryDirectory {tmp_path}\n") == []
    assert problems(SOCKET + f"TemporaryDirectory {missing}\n") == [
        f"Current configuration of TemporaryDirectory: {missing} does not exist, or is not valid "
    ]


def test_bytecode_security_needs_the_exact_spelling() -> None:
    assert problems(SOCKET + "BytecodeSecurity Paranoid\n") == []
    assert problems(SOCKET + "BytecodeSecurity paranoid\n") == [
        "Unable to parse bytecode security setting:paranoid"
    ]
    # Not looked at when bytecode is off.
    assert problems(SOCKET + "Bytecode no\nBytecodeSecurity paranoid\n") == []


@pytest.mark.parametrize(
    ("text", "shown"), [("0", "0"), ("101", "101"), ("4294967295", str(2**64 - 1))]
)
def test_max_recursion_range(text: str, shown: str) -> None:
    assert problems(SOCKET + f"MaxRecursion {text}\n") == [
        f"MaxRecursion set to {shown}, but cannot be larger than 100, and cannot be 0."
    ]


def test_max_recursion_bounds() -> None:
    assert problems(SOCKET + "MaxRecursion 1\n") == []
    assert problems(SOCKET + "MaxRecursion 100\n") == []


def test_local_socket_group() -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    assert problems(SOCKET + f"LocalSocketGroup {group}\n") == []
    assert problems(SOCKET + "LocalSocketGroup 12345\n") == []
    assert problems(SOCKET + f"LocalSocketGroup {NO_GROUP}\n") == [f"Unknown group {NO_GROUP}"]
    # Only checked when there is a Unix socket to give to the group.
    assert problems(f"TCPSocket 3310\nLocalSocketGroup {NO_GROUP}\n") == []


def test_socket_gid() -> None:
    group = grp.getgrgid(os.getgid())
    assert socket_gid(Config()) is None
    assert socket_gid(Config(local_socket_group=group.gr_name)) == group.gr_gid
    assert socket_gid(Config(local_socket_group=" 42")) == 42
    with pytest.raises(KeyError):
        socket_gid(Config(local_socket_group=NO_GROUP))


@pytest.mark.parametrize("mode", ["8", "66x", "0o660", "rw"])
def test_local_socket_mode_must_be_octal(mode: str) -> None:
    assert problems(SOCKET + f"LocalSocketMode {mode}\n") == [f"Invalid LocalSocketMode {mode}"]
    with pytest.raises(ValueError, match="Invalid LocalSocketMode"):
        socket_mode(Config(local_socket_mode=mode))


@pytest.mark.parametrize(
    ("mode", "bits"),
    [(None, 0o666), ("660", 0o660), ("0600", 0o600), ("777", 0o666), ("4", 0o4), ("1", 0)],
)
def test_socket_mode(mode: str | None, bits: int) -> None:
    assert socket_mode(Config(local_socket_mode=mode)) == bits


def test_problems_come_in_clamd_order(tmp_path: Path) -> None:
    text = (
        f"LogFile rel.log\nLogSyslog yes\nLogFacility X\nStreamMinPort 1\nDetectPUA yes\n"
        f"ExcludePUA a\nIncludePUA b\nTemporaryDirectory {tmp_path}/no\n"
        "BytecodeSecurity paranoid\nMaxRecursion 0\n"
    )
    assert [p.split(" ")[0] for p in problems(text)] == [
        "LogFile",
        "LogFacility:",
        "Please",
        "Invalid",
        "ExcludePUA",
        "Current",
        "Unable",
        "MaxRecursion",
    ]
