"""What the daemon needs from its configuration, as one typed value (built by cli/vigild)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vigil.engine.limits import Limits
from vigil.paths import default_socket

__all__ = ["ServerSettings", "default_socket"]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Daemon settings with clamd's defaults (clamd-conf.md)."""

    local_socket: str | None = None
    local_socket_group: str | None = None
    local_socket_mode: int | None = None
    fix_stale_socket: bool = True
    tcp_socket: int | None = None
    tcp_addr: tuple[str, ...] = ()
    max_connection_queue_length: int = 200
    max_queue: int = 100
    max_threads: int = 10
    idle_timeout: int = 30
    read_timeout: int = 120
    command_read_timeout: int = 30
    send_buf_timeout: int = 500  # milliseconds
    stream_max_length: int = 100 * 1024 * 1024
    database_dirs: tuple[str, ...] = ()
    official_database_only: bool = False
    trusted_keys_directory: str | None = None  # VigilTrustedKeysDirectory
    detect_pua: bool = False
    limits: Limits = field(default_factory=Limits)
    allow_all_match_scan: bool = True
    exclude_path: tuple[str, ...] = ()
    follow_directory_symlinks: bool = False
    follow_file_symlinks: bool = False
    cross_filesystems: bool = True
    max_directory_recursion: int = 15
    temporary_directory: str | None = None
    pid_file: str | None = None
    virus_event: str | None = None
    self_check: int = 600
    concurrent_database_reload: bool = True
    user: str | None = None
    exit_on_oom: bool = False
    log_clean: bool = False
    extended_detection_info: bool = False
    enable_shutdown_command: bool = True
    enable_reload_command: bool = True
    enable_version_command: bool = True
    enable_stats_command: bool = True
    enable_self_check_command: bool = True
