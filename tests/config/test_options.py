"""The option table and Config against the spec's table (clamd-conf.md §4), option by option."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from vigil.config import OPTIONS, SIZE_LIMIT, Config, OptionType, Tool, defaults, parse_config
from vigil.config.model import Config as ModelConfig
from vigil.config.options import BY_LONG_OPTION, BY_NAME, VIGIL_OPTIONS, Option

# Transcribed from the spec: name, type, default, repeat (*), long command-line option,
# and whether the option is deprecated (accepted, ignored with a warning).
SPEC_TABLE = """
    AlertExceedsMax BOOL no - alert-exceeds-max
    CacheSize NUMBER 65536 - cache-size
    PreludeEnable BOOL no - prelude-enable
    PreludeAnalyzerName STRING unset - prelude-analyzer-name
    LogFile STRING unset - log
    LogFileUnlock BOOL no - -
    LogFileMaxSize SIZE 1048576 - -
    LogTime BOOL no - -
    LogClean BOOL no - -
    LogSyslog BOOL no - -
    LogFacility STRING LOG_LOCAL6 - -
    LogVerbose BOOL no - -
    LogRotate BOOL no - log-rotate
    ExtendedDetectionInfo BOOL no - -
    PidFile STRING unset - pid
    TemporaryDirectory STRING unset - tempdir
    DatabaseDirectory STRING /var/lib/clamav - datadir
    CVDCertsDirectory STRING unset - cvdcertsdir
    OfficialDatabaseOnly BOOL no - official-db-only
    FailIfCvdOlderThan NUMBER unset - fail-if-cvd-older-than
    LocalSocket STRING unset - -
    LocalSocketGroup STRING unset - -
    LocalSocketMode STRING unset - -
    FixStaleSocket BOOL yes - -
    TCPSocket NUMBER unset - -
    EnableShutdownCommand BOOL yes - -
    EnableReloadCommand BOOL yes - -
    EnableSelfCheckCommand BOOL yes - -
    EnableVersionCommand BOOL yes - -
    EnableStatsCommand BOOL yes - -
    TCPAddr STRING unset * -
    MaxConnectionQueueLength NUMBER 200 - -
    StreamMaxLength SIZE 104857600 - -
    StreamMinPort NUMBER 1024 - -
    StreamMaxPort NUMBER 2048 - -
    MaxThreads NUMBER 10 - -
    ReadTimeout NUMBER 120 - -
    CommandReadTimeout NUMBER 30 - -
    SendBufTimeout NUMBER 500 - -
    MaxQueue NUMBER 100 - -
    IdleTimeout NUMBER 30 - -
    ExcludePath STRING unset * -
    MaxDirectoryRecursion NUMBER 15 - max-dir-recursion
    FollowDirectorySymlinks BOOL no - -
    FollowFileSymlinks BOOL no - -
    CrossFilesystems BOOL yes - cross-fs
    SelfCheck NUMBER 600 - -
    ConcurrentDatabaseReload BOOL yes - -
    DisableCache BOOL no - disable-cache
    VirusEvent STRING unset - -
    ExitOnOOM BOOL no - -
    AllowAllMatchScan BOOL yes - -
    Foreground BOOL no - foreground
    Debug BOOL no - -
    LeaveTemporaryFiles BOOL no - -
    GenerateMetadataJson BOOL no - -
    JsonStoreHTMLURIs BOOL yes - json-store-html-uris
    JsonStorePDFURIs BOOL yes - json-store-pdf-uris
    JsonStoreExtraHashes BOOL no - json-store-extra-hashes
    User STRING unset - -
    FIPSCryptoHashLimits BOOL no - fips-limits
    Bytecode BOOL yes - bytecode
    BytecodeSecurity ENUM TrustSigned - -
    BytecodeTimeout NUMBER 10000 - bytecode-timeout
    BytecodeUnsigned BOOL no - bytecode-unsigned
    BytecodeMode ENUM Auto - bytecode-mode
    DetectPUA BOOL no - detect-pua
    ExcludePUA STRING unset * exclude-pua
    IncludePUA STRING unset * include-pua
    ScanPE BOOL yes - scan-pe
    ScanELF BOOL yes - scan-elf
    ScanMail BOOL yes - scan-mail
    ScanPartialMessages BOOL no - -
    PhishingSignatures BOOL yes - phishing-sigs
    PhishingScanURLs BOOL yes - phishing-scan-urls
    HeuristicAlerts BOOL yes - heuristic-alerts
    HeuristicScanPrecedence BOOL no - heuristic-scan-precedence
    StructuredDataDetection BOOL no - detect-structured
    StructuredMinCreditCardCount NUMBER 3 - structured-cc-count
    StructuredMinSSNCount NUMBER 3 - structured-ssn-count
    StructuredSSNFormatNormal BOOL yes - -
    StructuredSSNFormatStripped BOOL no - -
    ScanHTML BOOL yes - scan-html
    ScanOLE2 BOOL yes - scan-ole2
    AlertBrokenExecutables BOOL no - alert-broken
    AlertBrokenMedia BOOL no - alert-broken-media
    AlertEncrypted BOOL no - alert-encrypted
    StructuredCCOnly BOOL no - structured-cc-mode
    AlertEncryptedArchive BOOL no - alert-encrypted-archive
    AlertEncryptedDoc BOOL no - alert-encrypted-doc
    AlertOLE2Macros BOOL no - alert-macros
    AlertPhishingSSLMismatch BOOL no - alert-phishing-ssl
    AlertPhishingCloak BOOL no - alert-phishing-cloak
    AlertPartitionIntersection BOOL no - alert-partition-intersection
    ScanPDF BOOL yes - scan-pdf
    ScanSWF BOOL yes - scan-swf
    ScanXMLDOCS BOOL yes - scan-xmldocs
    ScanHWP3 BOOL yes - scan-hwp3
    ScanOneNote BOOL yes - scan-onenote
    ScanArchive BOOL yes - scan-archive
    ScanImage BOOL yes - scan-image
    ScanImageFuzzyHash BOOL yes - scan-image-fuzzy-hash
    ForceToDisk BOOL no - force-to-disk
    MaxScanTime NUMBER unset - max-scantime
    MaxScanSize SIZE64 419430400 - max-scansize
    MaxFileSize SIZE 104857600 - max-filesize
    MaxRecursion NUMBER 17 - max-recursion
    MaxFiles NUMBER 10000 - max-files
    MaxEmbeddedPE SIZE 41943040 - max-embeddedpe
    MaxHTMLNormalize SIZE 41943040 - max-htmlnormalize
    MaxHTMLNoTags SIZE 8388608 - max-htmlnotags
    MaxScriptNormalize SIZE 20971520 - max-scriptnormalize
    MaxZipTypeRcg SIZE 1048576 - max-ziptypercg
    MaxPartitions NUMBER 50 - max-partitions
    MaxIconsPE NUMBER 100 - max-iconspe
    MaxRecHWP3 NUMBER 16 - max-rechwp3
    PCREMatchLimit NUMBER 100000 - pcre-match-limit
    PCRERecMatchLimit NUMBER 2000 - pcre-recmatch-limit
    PCREMaxFileSize SIZE 104857600 - pcre-max-filesize
    OnAccessMountPath STRING unset * -
    OnAccessIncludePath STRING unset * -
    OnAccessExcludePath STRING unset * -
    OnAccessExcludeRootUID BOOL no - -
    OnAccessExcludeUID NUMBER unset * -
    OnAccessExcludeUname STRING unset * -
    OnAccessMaxFileSize SIZE 5242880 - -
    OnAccessDisableDDD BOOL no - -
    OnAccessPrevention BOOL no - -
    OnAccessExtraScanning BOOL no - -
    OnAccessCurlTimeout NUMBER 5000 - -
    OnAccessMaxThreads NUMBER 5 - -
    OnAccessRetryAttempts NUMBER 0 - -
    OnAccessDenyOnError BOOL no - -
    DevACOnly BOOL no - dev-ac-only
    DevACDepth NUMBER unset - dev-ac-depth
    DevPerformance BOOL no - dev-performance
    DevLiblog BOOL no - dev-liblog
    DisableCertCheck BOOL no - nocerts
    DetectBrokenExecutables BOOL no - detect-broken deprecated
    AlgorithmicDetection BOOL yes - algorithmic-detection
    BlockMax BOOL no - block-max
    PhishingAlwaysBlockSSLMismatch BOOL no - phishing-ssl
    PhishingAlwaysBlockCloak BOOL no - phishing-cloak
    PartitionIntersection BOOL no - partition-intersection
    OLE2BlockMacros BOOL no - block-macros
    ArchiveBlockEncrypted BOOL no - block-encrypted
    MailMaxRecursion NUMBER unset - - deprecated
    ArchiveMaxScanSize SIZE unset - - deprecated
    ArchiveMaxRecursion NUMBER unset - - deprecated
    ArchiveMaxFiles NUMBER unset - - deprecated
    ArchiveMaxCompressionRatio NUMBER unset - - deprecated
    ArchiveBlockMax BOOL no - - deprecated
    ArchiveLimitMemoryUsage BOOL no - - deprecated
    MailFollowURLs BOOL no - mail-follow-urls deprecated
    AllowSupplementaryGroups BOOL no - - deprecated
    ScanOnAccess BOOL no - - deprecated
"""

HONOURED = {
    "LocalSocket", "LocalSocketGroup", "LocalSocketMode", "FixStaleSocket", "TCPSocket",
    "TCPAddr", "MaxConnectionQueueLength", "MaxQueue", "MaxThreads", "MaxDirectoryRecursion",
    "ReadTimeout", "CommandReadTimeout", "SendBufTimeout", "StreamMaxLength", "StreamMinPort",
    "StreamMaxPort", "DatabaseDirectory", "OfficialDatabaseOnly", "MaxScanSize", "MaxFileSize",
    "MaxRecursion", "MaxFiles", "MaxScanTime", "AlertExceedsMax", "DetectPUA",
    "HeuristicAlerts", "HeuristicScanPrecedence", "AllowAllMatchScan", "ExcludePath",
    "FollowDirectorySymlinks", "FollowFileSymlinks", "CrossFilesystems", "PidFile",
    "Foreground", "Debug", "TemporaryDirectory", "LogFile", "LogFileMaxSize", "LogRotate",
    "LogTime", "LogClean", "LogVerbose", "LogSyslog", "LogFacility", "ExtendedDetectionInfo",
    "VirusEvent", "SelfCheck", "ConcurrentDatabaseReload", "User", "ExitOnOOM",
    "EnableShutdownCommand", "EnableReloadCommand", "EnableSelfCheckCommand",
    "EnableVersionCommand", "EnableStatsCommand",
    # the parsers and their limits (issue #4)
    "ScanPE", "ScanELF", "ScanMail", "ScanHTML", "ScanOLE2", "ScanPDF",
    "ScanOneNote", "ScanArchive", "AlertEncrypted", "AlertEncryptedArchive",
    "AlertEncryptedDoc", "MaxEmbeddedPE", "MaxZipTypeRcg", "PCREMaxFileSize",
    "MaxHTMLNormalize", "MaxHTMLNoTags", "MaxScriptNormalize",
    # performance (issue #5)
    "DisableCache",
}  # fmt: skip

# A valid argument for each syntax type and the value clamd turns it into.
SAMPLES: dict[OptionType, tuple[str, object]] = {
    OptionType.BOOL: ("TRUE", True),
    OptionType.NUMBER: ("42", 42),
    OptionType.SIZE: ("3k", 3072),
    OptionType.SIZE64: ("3G", 3 * 1024**3),
    OptionType.STRING: ("some text", "some text"),
    OptionType.PATH: ("/some/path", "/some/path"),
    OptionType.MODE: ("0660", "0660"),
}


def spec_rows() -> list[list[str]]:
    return [line.split() for line in SPEC_TABLE.strip().splitlines()]


def spec_default(row: list[str]) -> object:
    """The spec's default in the form the table stores it."""
    _, kind, text, repeat = row[:4]
    if repeat == "*":
        return ()
    if kind == "BOOL":
        return text == "yes"
    if text == "unset":
        return None
    if kind in ("NUMBER", "SIZE", "SIZE64"):
        return int(text)
    return text


def test_table_has_every_option_of_the_spec_in_order() -> None:
    assert [opt.name for opt in OPTIONS] == [row[0] for row in spec_rows()]
    assert len(OPTIONS) == 156


@pytest.mark.parametrize("row", spec_rows(), ids=lambda row: row[0])
def test_option_matches_spec(row: list[str]) -> None:
    opt = BY_NAME[row[0]]
    kind = opt.type.name if opt.type not in (OptionType.PATH, OptionType.MODE) else "STRING"
    assert kind == row[1]
    assert opt.default == spec_default(row)
    assert opt.repeat == (row[3] == "*")
    assert opt.long_option == (None if row[4] == "-" else row[4])
    assert opt.deprecated == ("deprecated" in row)
    assert opt.help and "\n" not in opt.help


def test_names_and_spellings_are_unique() -> None:
    attrs = [opt.attr for opt in OPTIONS]
    assert len(set(attrs)) == len(attrs)
    assert len(BY_NAME) == len(OPTIONS) + len(VIGIL_OPTIONS)
    assert not {o.name for o in VIGIL_OPTIONS} & {o.name for o in OPTIONS}
    longs = [opt.long_option for opt in OPTIONS if opt.long_option]
    assert len(set(longs)) == len(longs) == len(BY_LONG_OPTION)
    assert not set(BY_LONG_OPTION) & set(BY_NAME)


def test_honoured_options_are_the_ones_vigil_implements() -> None:
    assert {opt.name for opt in OPTIONS if opt.honoured} == HONOURED


def test_enum_options_list_their_choices() -> None:
    assert BY_NAME["BytecodeSecurity"].choices == ("TrustSigned", "Paranoid")
    assert BY_NAME["BytecodeMode"].choices == ("Auto", "ForceJIT", "ForceInterpreter", "Test")
    assert all(bool(opt.choices) == (opt.type is OptionType.ENUM) for opt in OPTIONS)


def test_tools() -> None:
    assert BY_NAME["LocalSocket"].tools == {Tool.CLAMD, Tool.CLAMDSCAN, Tool.CLAMONACC}
    assert BY_NAME["ExcludePath"].tools == {Tool.CLAMD, Tool.CLAMDSCAN}
    assert BY_NAME["OnAccessPrevention"].tools == {Tool.CLAMONACC}
    assert BY_NAME["MaxThreads"].tools == {Tool.CLAMD}


def test_versions_follow_the_spec() -> None:
    newer = {opt.name: opt.since for opt in OPTIONS if opt.since != (1, 0)}
    assert newer == {
        "FailIfCvdOlderThan": (1, 1),
        "CacheSize": (1, 2),
        "ScanOneNote": (1, 3),
        "ScanImage": (1, 4),
        "ScanImageFuzzyHash": (1, 4),
        "CVDCertsDirectory": (1, 5),
        "FIPSCryptoHashLimits": (1, 5),
        "EnableShutdownCommand": (1, 5),
        "EnableReloadCommand": (1, 5),
        "EnableVersionCommand": (1, 5),
        "EnableStatsCommand": (1, 5),
        "JsonStoreHTMLURIs": (1, 5),
        "JsonStorePDFURIs": (1, 5),
        "JsonStoreExtraHashes": (1, 5),
        "EnableSelfCheckCommand": (1, 6),
    }


def expected_annotation(opt: Option) -> object:
    if opt.type is OptionType.BOOL:
        return bool
    base = int if opt.type in (OptionType.NUMBER, OptionType.SIZE, OptionType.SIZE64) else str
    if opt.repeat:
        return tuple[base, ...]  # type: ignore[valid-type]
    return base | None if opt.default is None else base


def test_config_has_one_typed_attribute_per_live_option() -> None:
    hints = typing.get_type_hints(ModelConfig)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    live = [opt for opt in OPTIONS + VIGIL_OPTIONS if not opt.deprecated]
    assert set(fields) - {"source", "explicit"} == {opt.attr for opt in live}
    for opt in live:
        assert hints[opt.attr] == expected_annotation(opt), opt.name
        assert fields[opt.attr].default == opt.default, opt.name
    assert all(not hasattr(Config(), opt.attr) for opt in OPTIONS if opt.deprecated)


def test_config_is_frozen() -> None:
    cfg = defaults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_threads = 3  # type: ignore[misc]


def test_defaults() -> None:
    cfg = defaults()
    assert cfg.source is None and cfg.explicit == frozenset()
    for opt in OPTIONS:
        if not opt.deprecated:
            assert cfg.get(opt.name) == opt.default
    assert cfg.max_scan_size == 400 * 1024 * 1024
    assert cfg.tcp_socket is None and cfg.local_socket is None
    assert cfg.database_directory == "/var/lib/clamav"


def test_get_rejects_unknown_and_deprecated_names() -> None:
    cfg = defaults()
    with pytest.raises(KeyError):
        cfg.get("NoSuchOption")
    with pytest.raises(KeyError):
        cfg.get("ScanOnAccess")
    with pytest.raises(KeyError):
        cfg.get("max-files")  # long spellings are for the file, not for lookups


@pytest.mark.parametrize("opt", [o for o in OPTIONS if not o.deprecated], ids=lambda o: o.name)
def test_every_option_parses_with_its_type(opt: Option) -> None:
    # The second line checks repetition: it accumulates or is ignored (first one wins).
    value: object
    if opt.type is OptionType.ENUM:
        # clamd's check ignores letter case and keeps the text as written.
        text = value = opt.choices[-1].upper()
    else:
        text, value = SAMPLES[opt.type]
    cfg = parse_config(f"{opt.name} {text}\n{opt.name} {text}\n", "t.conf")
    expected = (value, value) if opt.repeat else value
    assert cfg.get(opt.name) == expected
    assert cfg.is_set(opt.name)
    assert cfg.explicit == {opt.name}


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.long_option], ids=lambda o: o.name)
def test_long_spelling_sets_the_same_option(opt: Option) -> None:
    if opt.type is OptionType.ENUM:
        text = opt.choices[0]
    else:
        text = SAMPLES[opt.type][0]
    messages: list[str] = []
    cfg = parse_config(f"{opt.long_option} {text}\n", "t.conf", on_warning=messages.append)
    if opt.deprecated:
        assert messages == [f"Ignoring deprecated option {opt.name} at t.conf:1"]
        assert cfg == Config(source="t.conf")
    else:
        assert messages == []
        assert cfg.is_set(opt.name)


def test_size_limit_is_llong_max() -> None:
    assert SIZE_LIMIT == 2**63 - 1
