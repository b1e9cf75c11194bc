"""freshclam.conf support: the option table and a typed FreshclamConfig.

freshclam.conf has clamd.conf's line syntax (clamd-conf.md §2), so the line splitting and
argument checks are the clamd.conf parser's; only the table of option names differs. Every
option freshclam 1.4 accepts is listed so that a stock freshclam.conf loads; ``honoured``
marks the ones ``vigil update`` acts on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from vigil.config.options import Option, OptionType
from vigil.config.parser import WarningHandler, read_config_file, read_options

__all__ = [
    "FRESHCLAM_OPTIONS",
    "FreshclamConfig",
    "load_freshclam_config",
    "parse_freshclam_config",
]

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "database.clamav.net"

B, N, S, P = OptionType.BOOL, OptionType.NUMBER, OptionType.STRING, OptionType.PATH
_NONE: frozenset[Any] = frozenset()  # freshclam.conf options belong to no clamd.conf tool


def _opt(name: str, attr: str, kind: OptionType, default: Any, text: str, **kw: Any) -> Option:
    return Option(name, attr, kind, default, text, tools=_NONE, **kw)


FRESHCLAM_OPTIONS: tuple[Option, ...] = (
    _opt("DatabaseDirectory", "database_directory", P, "/var/lib/clamav",
         "where the databases live", honoured=True),
    _opt("DatabaseMirror", "database_mirror", S, (), "official mirror host or URL",
         repeat=True, honoured=True),
    _opt("PrivateMirror", "private_mirror", S, (), "private mirror (replaces DatabaseMirror)",
         repeat=True, honoured=True),
    _opt("DatabaseCustomURL", "database_custom_url", S, (), "extra database file by URL",
         repeat=True, honoured=True),
    _opt("ExtraDatabase", "extra_database", S, (), "extra official database name",
         repeat=True, honoured=True),
    _opt("ExcludeDatabase", "exclude_database", S, (), "skip this database name",
         repeat=True, honoured=True),
    _opt("Bytecode", "bytecode", B, True, "also update bytecode.cvd", honoured=True),
    _opt("ScriptedUpdates", "scripted_updates", B, True, "use CDIFF patches", honoured=True),
    _opt("CompressLocalDatabase", "compress_local_database", B, False,
         "gzip the body of .cld files", honoured=True),
    _opt("TestDatabases", "test_databases", B, True, "load new databases before use",
         honoured=True),
    _opt("Checks", "checks", N, 12, "checks per day in daemon mode", honoured=True),
    _opt("NotifyClamd", "notify_clamd", P, None, "clamd.conf of the daemon to RELOAD",
         honoured=True),
    _opt("OnUpdateExecute", "on_update_execute", S, None, "command after an update",
         honoured=True),
    _opt("OnErrorExecute", "on_error_execute", S, None, "command after an error",
         honoured=True),
    _opt("OnOutdatedExecute", "on_outdated_execute", S, None, "command when outdated"),
    _opt("ConnectTimeout", "connect_timeout", N, 30, "seconds to connect", honoured=True),
    _opt("ReceiveTimeout", "receive_timeout", N, 60, "seconds of read silence (0: none)",
         honoured=True),
    _opt("HTTPProxyServer", "http_proxy_server", S, None, "proxy host", honoured=True),
    _opt("HTTPProxyPort", "http_proxy_port", N, None, "proxy port", honoured=True),
    _opt("HTTPProxyUsername", "http_proxy_username", S, None, "proxy user", honoured=True),
    _opt("HTTPProxyPassword", "http_proxy_password", S, None, "proxy password",
         honoured=True),
    _opt("HTTPUserAgent", "http_user_agent", S, None, "User-Agent header", honoured=True),
    _opt("MaxAttempts", "max_attempts", N, 3, "tries per download", honoured=True),
    _opt("UpdateLogFile", "update_log_file", P, None, "log file", honoured=True,
         long_option="LogFile"),
    _opt("CVDCertsDirectory", "cvd_certs_directory", P, None,
         "CA certificate file or directory that .sign files must chain to", honoured=True),
    _opt("VigilTrustedKeysDirectory", "vigil_trusted_keys_directory", P, None,
         "Vigil only: PEM RSA public keys trusted to sign .cvd/.cdiff files", honoured=True),
    _opt("DNSDatabaseInfo", "dns_database_info", S, None,
         "TXT record with versions; Vigil never queries DNS (HTTP headers instead)"),
    _opt("LogFileMaxSize", "log_file_max_size", OptionType.SIZE, 1024 * 1024, "log size cap"),
    _opt("LogTime", "log_time", B, False, "time stamps in the log"),
    _opt("LogSyslog", "log_syslog", B, False, "log to syslog"),
    _opt("LogFacility", "log_facility", S, "LOG_LOCAL6", "syslog facility"),
    _opt("LogVerbose", "log_verbose", B, False, "verbose log"),
    _opt("LogRotate", "log_rotate", B, False, "rotate the log"),
    _opt("PidFile", "pid_file", P, None, "daemon pid file"),
    _opt("Foreground", "foreground", B, False, "do not fork in daemon mode"),
    _opt("Debug", "debug", B, False, "debug messages"),
    _opt("DatabaseOwner", "database_owner", S, "clamav", "user to run as"),
    _opt("AllowSupplementaryGroups", "allow_supplementary_groups", B, False, "groups",
         deprecated=True),
    _opt("LocalIPAddress", "local_ip_address", S, None, "source address"),
    _opt("SafeBrowsing", "safe_browsing", B, False, "obsolete", deprecated=True),
    _opt("Example", "example", B, False, "sample-file marker"),
)  # fmt: skip

_BY_NAME = {o.name: o for o in FRESHCLAM_OPTIONS}
_BY_LONG = {o.long_option: o for o in FRESHCLAM_OPTIONS if o.long_option}


@dataclass(frozen=True, slots=True)
class FreshclamConfig:
    """Typed freshclam.conf; defaults are freshclam 1.4's."""

    database_directory: str = "/var/lib/clamav"
    database_mirror: tuple[str, ...] = ()
    private_mirror: tuple[str, ...] = ()
    database_custom_url: tuple[str, ...] = ()
    extra_database: tuple[str, ...] = ()
    exclude_database: tuple[str, ...] = ()
    bytecode: bool = True
    scripted_updates: bool = True
    compress_local_database: bool = False
    test_databases: bool = True
    checks: int = 12
    notify_clamd: str | None = None
    on_update_execute: str | None = None
    on_error_execute: str | None = None
    on_outdated_execute: str | None = None
    connect_timeout: int = 30
    receive_timeout: int = 60
    http_proxy_server: str | None = None
    http_proxy_port: int | None = None
    http_proxy_username: str | None = None
    http_proxy_password: str | None = None
    http_user_agent: str | None = None
    max_attempts: int = 3
    update_log_file: str | None = None
    cvd_certs_directory: str | None = None
    vigil_trusted_keys_directory: str | None = None
    dns_database_info: str | None = None
    log_file_max_size: int = 1024 * 1024
    log_time: bool = False
    log_syslog: bool = False
    log_facility: str = "LOG_LOCAL6"
    log_verbose: bool = False
    log_rotate: bool = False
    pid_file: str | None = None
    foreground: bool = False
    debug: bool = False
    database_owner: str = "clamav"
    allow_supplementary_groups: bool = False
    local_ip_address: str | None = None
    safe_browsing: bool = False
    example: bool = False
    source: str | None = None
    explicit: frozenset[str] = field(default_factory=frozenset)

    def mirrors(self) -> tuple[str, ...]:
        """Where to download from: PrivateMirror wins over DatabaseMirror (as in freshclam)."""
        return self.private_mirror or self.database_mirror or (DEFAULT_MIRROR,)


def load_freshclam_config(
    path: str | os.PathLike[str], *, on_warning: WarningHandler | None = None
) -> FreshclamConfig:
    """Read and parse one freshclam.conf file; ConfigError when unreadable or wrong."""
    name, data = read_config_file(path)
    return _parse(data, name, on_warning)


def parse_freshclam_config(
    text: str, path: str = "freshclam.conf", *, on_warning: WarningHandler | None = None
) -> FreshclamConfig:
    """Parse freshclam.conf ``text``; ``path`` only names the file in messages."""
    return _parse(text.encode("utf-8", "surrogateescape"), path, on_warning)


def _parse(data: bytes, path: str, on_warning: WarningHandler | None) -> FreshclamConfig:
    """The clamd.conf line rules over the freshclam option table."""
    warn = on_warning if on_warning is not None else _log_warning
    single, repeated = read_options(data, path, _BY_NAME, _BY_LONG, warn)
    fields: dict[str, Any] = {opt.attr: v for opt, v in single.items()}
    fields.update({opt.attr: tuple(v) for opt, v in repeated.items()})
    explicit = frozenset(o.attr for o in single) | frozenset(o.attr for o in repeated)
    return FreshclamConfig(**fields, source=path, explicit=explicit)


def _log_warning(message: str) -> None:
    log.warning("%s", message)
