"""Scan limits and switches (signatures.md §9.3): plain values handed to the engine, never a
Config, so the engine does not depend on how clamd.conf or the command line spelt them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """ClamAV's default limits and scan options; 0 disables a limit where ClamAV allows it."""

    max_scansize: int = 400 * MiB
    max_filesize: int = 100 * MiB
    max_recursion: int = 17
    max_files: int = 10000
    max_scantime: int = 120000  # milliseconds
    max_html_normalize: int = 40 * MiB
    max_html_notags: int = 8 * MiB
    max_script_normalize: int = 20 * MiB
    max_embedded_pe: int = 40 * MiB
    max_zip_type_rcg: int = 1 * MiB
    max_partitions: int = 50
    max_icons_pe: int = 100
    pcre_max_filesize: int = 100 * MiB  # 0: PCRE subsignatures on objects of any size
    alert_exceeds_max: bool = False
    # parsers (ScanArchive, ScanPE, ... in clamd.conf; --scan-archive=no etc. in vigil scan)
    scan_archive: bool = True
    scan_pe: bool = True
    scan_elf: bool = True
    scan_ole2: bool = True
    scan_pdf: bool = True
    scan_html: bool = True
    scan_mail: bool = True
    scan_swf: bool = True
    scan_xmldocs: bool = True
    scan_hwp3: bool = True
    scan_onenote: bool = True
    scan_image: bool = True
    # heuristic detections (HeuristicAlerts), and those that are off by default in clamd
    heuristic_alerts: bool = True
    alert_encrypted_archive: bool = False
    alert_encrypted_doc: bool = False
    alert_broken: bool = False
    alert_ole2_macros: bool = False
    # the clean-result cache (DisableCache no / clamscan without --disable-cache)
    clean_cache: bool = True

    def oversized(self, size: int) -> list[str] | None:
        """For an object over MaxFileSize, its result without reading it; None otherwise.

        Such an object is not scanned: clean, or the heuristic with AlertExceedsMax (§9.3).
        """
        if not self.max_filesize or size <= self.max_filesize:
            return None
        return ["Heuristics.Limits.Exceeded.MaxFileSize"] if self.alert_exceeds_max else []
