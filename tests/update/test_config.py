"""freshclam.conf parsing: stock files load, unknown options fail, types are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config.freshclam import (
    DEFAULT_MIRROR,
    FreshclamConfig,
    load_freshclam_config,
    parse_freshclam_config,
)
from vigil.errors import ConfigError
from vigil.update import database_names

DEBIAN = Path("/etc/clamav/freshclam.conf")


def test_defaults() -> None:
    config = FreshclamConfig()
    assert config.mirrors() == (DEFAULT_MIRROR,)
    assert database_names(config) == ["main", "daily", "bytecode"]
    assert config.scripted_updates and config.test_databases and config.checks == 12


@pytest.mark.skipif(not DEBIAN.exists(), reason="no Debian freshclam.conf")
def test_debian_stock_file_loads() -> None:
    config = load_freshclam_config(DEBIAN)
    assert config.database_directory == "/var/lib/clamav"
    assert config.database_mirror


def test_values_and_repeats() -> None:
    config = parse_freshclam_config(
        "DatabaseMirror a.example\nDatabaseMirror b.example\nPrivateMirror http://p:8\n"
        "Checks 24\nScriptedUpdates no\nLogFile /tmp/u.log\nExtraDatabase test\n"
        "ExcludeDatabase daily\nBytecode no\nDNSDatabaseInfo current.cvd.clamav.net\n"
    )
    assert config.database_mirror == ("a.example", "b.example")
    assert config.mirrors() == ("http://p:8",)
    assert config.checks == 24 and not config.scripted_updates
    assert config.update_log_file == "/tmp/u.log"
    assert database_names(config) == ["main", "test"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Bogus yes\n", "Unknown option"),
        ("Checks many\n", "Incorrect argument format"),
        ("Example\n", "Please edit the example config file"),
        ("LocalSocket /tmp/x\n", "Unknown option"),  # a clamd option is not a freshclam one
    ],
)
def test_errors(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_freshclam_config(text, "f.conf")
    assert info.value.reason == reason
