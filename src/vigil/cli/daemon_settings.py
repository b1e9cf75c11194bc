"""clamd.conf -> the daemon's settings: the one place that maps options onto behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.config import Config, defaults, load_config, socket_mode, validate
from vigil.engine.database import builtin_database_dir
from vigil.engine.limits import Limits
from vigil.errors import ConfigError
from vigil.server.settings import ServerSettings, default_socket

__all__ = ["LogOptions", "load_settings", "settings_from_config"]


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The options that shape logging and process start, handled by the command line."""

    log_file: str | None = None
    log_time: bool = False
    log_verbose: bool = False
    log_syslog: bool = False
    log_facility: str = "LOG_LOCAL6"
    log_file_max_size: int = 1024 * 1024
    log_rotate: bool = False
    foreground: bool = False
    debug: bool = False


def settings_from_config(cfg: Config, *, builtin_defaults: bool = False) -> ServerSettings:
    """Translate a parsed clamd.conf into ServerSettings (raises ConfigError when invalid).

    ``builtin_defaults`` is for a vigild started without -c: a Unix socket in a runtime
    directory and the database shipped with Vigil, so that ``vigild`` alone works.
    """
    source = cfg.source or "(built-in defaults)"
    problems = [] if builtin_defaults else validate(cfg)
    if problems:
        raise ConfigError(source, 0, "", problems[0])
    try:
        mode = socket_mode(cfg) if cfg.local_socket_mode is not None else None
    except ValueError as exc:
        raise ConfigError(source, 0, "LocalSocketMode", str(exc)) from None
    max_scan_time = cfg.max_scan_time if cfg.max_scan_time else Limits().max_scantime
    limits = Limits(
        max_scansize=cfg.max_scan_size,
        max_filesize=cfg.max_file_size,
        max_recursion=cfg.max_recursion,
        max_files=cfg.max_files,
        max_scantime=max_scan_time,
        max_html_normalize=cfg.max_html_normalize,
        max_html_notags=cfg.max_html_no_tags,
        max_script_normalize=cfg.max_script_normalize,
        max_embedded_pe=cfg.max_embedded_pe,
        max_zip_type_rcg=cfg.max_zip_type_rcg,
        max_partitions=cfg.max_partitions,
        max_icons_pe=cfg.max_icons_pe,
        pcre_max_filesize=cfg.pcre_max_file_size,
        alert_exceeds_max=cfg.alert_exceeds_max or cfg.block_max,
        scan_archive=cfg.scan_archive,
        scan_pe=cfg.scan_pe,
        scan_elf=cfg.scan_elf,
        scan_ole2=cfg.scan_ole2,
        scan_pdf=cfg.scan_pdf,
        scan_html=cfg.scan_html,
        scan_mail=cfg.scan_mail,
        scan_swf=cfg.scan_swf,
        scan_xmldocs=cfg.scan_xmldocs,
        scan_hwp3=cfg.scan_hwp3,
        scan_onenote=cfg.scan_one_note,
        scan_image=cfg.scan_image,
        alert_encrypted_archive=cfg.alert_encrypted or cfg.alert_encrypted_archive,
        alert_encrypted_doc=cfg.alert_encrypted or cfg.alert_encrypted_doc,
        heuristic_alerts=cfg.heuristic_alerts and cfg.algorithmic_detection,
        alert_broken=cfg.alert_broken_executables,
        alert_ole2_macros=cfg.alert_ole2_macros,
        clean_cache=not cfg.disable_cache,
    )
    local = cfg.local_socket
    dirs = (cfg.database_directory,)
    if builtin_defaults:
        local = local or default_socket()
        dirs = (str(builtin_database_dir()),)
    return ServerSettings(
        local_socket=local,
        local_socket_group=cfg.local_socket_group,
        local_socket_mode=mode,
        fix_stale_socket=cfg.fix_stale_socket,
        tcp_socket=cfg.tcp_socket if cfg.tcp_socket not in (None, 0, -1) else None,
        tcp_addr=cfg.tcp_addr,
        max_connection_queue_length=cfg.max_connection_queue_length,
        max_queue=cfg.max_queue,
        max_threads=cfg.max_threads,
        idle_timeout=cfg.idle_timeout,
        read_timeout=cfg.read_timeout,
        command_read_timeout=cfg.command_read_timeout,
        send_buf_timeout=cfg.send_buf_timeout,
        stream_max_length=cfg.stream_max_length,
        database_dirs=dirs,
        official_database_only=cfg.official_database_only,
        trusted_keys_directory=cfg.vigil_trusted_keys_directory,
        detect_pua=cfg.detect_pua,
        limits=limits,
        allow_all_match_scan=cfg.allow_all_match_scan,
        exclude_path=cfg.exclude_path,
        follow_directory_symlinks=cfg.follow_directory_symlinks,
        follow_file_symlinks=cfg.follow_file_symlinks,
        cross_filesystems=cfg.cross_filesystems,
        max_directory_recursion=cfg.max_directory_recursion,
        temporary_directory=cfg.temporary_directory,
        pid_file=cfg.pid_file,
        virus_event=cfg.virus_event,
        self_check=cfg.self_check,
        concurrent_database_reload=cfg.concurrent_database_reload,
        user=cfg.user,
        exit_on_oom=cfg.exit_on_oom,
        log_clean=cfg.log_clean,
        extended_detection_info=cfg.extended_detection_info,
        enable_shutdown_command=cfg.enable_shutdown_command,
        enable_reload_command=cfg.enable_reload_command,
        enable_version_command=cfg.enable_version_command,
        enable_stats_command=cfg.enable_stats_command,
        enable_self_check_command=cfg.enable_self_check_command,
    )


def load_settings(path: str | None) -> tuple[ServerSettings, LogOptions]:
    """Settings and logging options from ``path`` (or the built-in defaults without one)."""
    cfg = load_config(path) if path else defaults()
    settings = settings_from_config(cfg, builtin_defaults=path is None)
    logs = LogOptions(
        log_file=cfg.log_file,
        log_time=cfg.log_time,
        log_verbose=cfg.log_verbose,
        log_syslog=cfg.log_syslog,
        log_facility=cfg.log_facility,
        log_file_max_size=cfg.log_file_max_size,
        log_rotate=cfg.log_rotate,
        foreground=cfg.foreground,
        debug=cfg.debug,
    )
    return settings, logs
