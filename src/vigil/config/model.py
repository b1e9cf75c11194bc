"""The typed, immutable result of parsing clamd.conf; imports only the option table.

Attribute names are the option names in snake case (``MaxThreads`` -> ``max_threads``); the
table in ``options.py`` maps one to the other and holds the help text.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.config.options import BY_NAME, OptionValue

__all__ = ["Config"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every non-deprecated clamd.conf option as a typed attribute, plus where it came from.

    Unset options hold the table default; ``None`` marks options that clamd treats as absent
    (no TCP port, no log file...). SIZE values of 0 are already turned into ``SIZE_LIMIT``
    ("no limit"), as clamd does. Deprecated options are ignored by the parser, so they have
    no attribute. ``explicit`` names the options given in the file, for the few places where
    clamd distinguishes "set to the default" from "not set" (``MaxScanTime``, ``MaxQueue``).
    """

    alert_exceeds_max: bool = False
    cache_size: int = 65536
    prelude_enable: bool = False
    prelude_analyzer_name: str | None = None
    log_file: str | None = None
    log_file_unlock: bool = False
    log_file_max_size: int = MiB
    log_time: bool = False
    log_clean: bool = False
    log_syslog: bool = False
    log_facility: str = "LOG_LOCAL6"
    log_verbose: bool = False
    log_rotate: bool = False
    extended_detection_info: bool = False
    pid_file: str | None = None
    temporary_directory: str | None = None
    database_directory: str = "/var/lib/clamav"
    cvd_certs_directory: str | None = None
    official_database_only: bool = False
    vigil_trusted_keys_directory: str | None = None  # Vigil only (VIGIL_OPTIONS)
    fail_if_cvd_older_than: int | None = None
    local_socket: str | None = None
    local_socket_group: str | None = None
    local_socket_mode: str | None = None
    fix_stale_socket: bool = True
    tcp_socket: int | None = None
    enable_shutdown_command: bool = True
    enable_reload_command: bool = True
    enable_self_check_command: bool = True
    enable_version_command: bool = True
    enable_stats_command: bool = True
    tcp_addr: tuple[str, ...] = ()
    max_connection_queue_length: int = 200
    stream_max_length: int = 100 * MiB
    stream_min_port: int = 1024
    stream_max_port: int = 2048
    max_threads: int = 10
    read_timeout: int = 120
    command_read_timeout: int = 30
    send_buf_timeout: int = 500
    max_queue: int = 100
    idle_timeout: int = 30
    exclude_path: tuple[str, ...] = ()
    max_directory_recursion: int = 15
    follow_directory_symlinks: bool = False
    follow_file_symlinks: bool = False
    cross_filesystems: bool = True
    self_check: int = 600
    concurrent_database_reload: bool = True
    disable_cache: bool = False
    virus_event: str | None = None
    exit_on_oom: bool = False
    allow_all_match_scan: bool = True
    foreground: bool = False
    debug: bool = False
    leave_temporary_files: bool = False
    generate_metadata_json: bool = False
    json_store_html_uris: bool = True
    json_store_pdf_uris: bool = True
    json_store_extra_hashes: bool = False
    user: str | None = None
    fips_crypto_hash_limits: bool = False
    bytecode: bool = True
    bytecode_security: str = "TrustSigned"
    bytecode_timeout: int = 10000
    bytecode_unsigned: bool = False
    bytecode_mode: str = "Auto"
    detect_pua: bool = False
    exclude_pua: tuple[str, ...] = ()
    include_pua: tuple[str, ...] = ()
    scan_pe: bool = True
    scan_elf: bool = True
    scan_mail: bool = True
    scan_partial_messages: bool = False
    phishing_signatures: bool = True
    phishing_scan_urls: bool = True
    heuristic_alerts: bool = True
    heuristic_scan_precedence: bool = False
    structured_data_detection: bool = False
    structured_min_credit_card_count: int = 3
    structured_min_ssn_count: int = 3
    structured_ssn_format_normal: bool = True
    structured_ssn_format_stripped: bool = False
    scan_html: bool = True
    scan_ole2: bool = True
    alert_broken_executables: bool = False
    alert_broken_media: bool = False
    alert_encrypted: bool = False
    structured_cc_only: bool = False
    alert_encrypted_archive: bool = False
    alert_encrypted_doc: bool = False
    alert_ole2_macros: bool = False
    alert_phishing_ssl_mismatch: bool = False
    alert_phishing_cloak: bool = False
    alert_partition_intersection: bool = False
    scan_pdf: bool = True
    scan_swf: bool = True
    scan_xmldocs: bool = True
    scan_hwp3: bool = True
    scan_one_note: bool = True
    scan_archive: bool = True
    scan_image: bool = True
    scan_image_fuzzy_hash: bool = True
    force_to_disk: bool = False
    max_scan_time: int | None = None
    max_scan_size: int = 400 * MiB
    max_file_size: int = 100 * MiB
    max_recursion: int = 17
    max_files: int = 10000
    max_embedded_pe: int = 40 * MiB
    max_html_normalize: int = 40 * MiB
    max_html_no_tags: int = 8 * MiB
    max_script_normalize: int = 20 * MiB
    max_zip_type_rcg: int = MiB
    max_partitions: int = 50
    max_icons_pe: int = 100
    max_rec_hwp3: int = 16
    pcre_match_limit: int = 100000
    pcre_rec_match_limit: int = 2000
    pcre_max_file_size: int = 100 * MiB
    on_access_mount_path: tuple[str, ...] = ()
    on_access_include_path: tuple[str, ...] = ()
    on_access_exclude_path: tuple[str, ...] = ()
    on_access_exclude_root_uid: bool = False
    on_access_exclude_uid: tuple[int, ...] = ()
    on_access_exclude_uname: tuple[str, ...] = ()
    on_access_max_file_size: int = 5 * MiB
    on_access_disable_ddd: bool = False
    on_access_prevention: bool = False
    on_access_extra_scanning: bool = False
    on_access_curl_timeout: int = 5000
    on_access_max_threads: int = 5
    on_access_retry_attempts: int = 0
    on_access_deny_on_error: bool = False
    dev_ac_only: bool = False
    dev_ac_depth: int | None = None
    dev_performance: bool = False
    dev_liblog: bool = False
    disable_cert_check: bool = False
    algorithmic_detection: bool = True
    block_max: bool = False
    phishing_always_block_ssl_mismatch: bool = False
    phishing_always_block_cloak: bool = False
    partition_intersection: bool = False
    ole2_block_macros: bool = False
    archive_block_encrypted: bool = False

    source: str | None = None  # the file parsed; None for the built-in defaults
    explicit: frozenset[str] = frozenset()  # canonical names of the options present

    def get(self, name: str) -> OptionValue:
        """The value of the option spelled ``name`` as in clamd.conf (``KeyError`` if none)."""
        opt = BY_NAME.get(name)
        if opt is None or opt.deprecated:
            raise KeyError(name)
        value: OptionValue = getattr(self, opt.attr)
        return value

    def is_set(self, name: str) -> bool:
        """Whether the file gave ``name`` (canonical spelling) at least once."""
        return name in self.explicit
