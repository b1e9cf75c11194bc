"""Scan limits (signatures.md §9.3): plain values handed to the engine, never a Config."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """ClamAV's default limits; 0 disables a limit where ClamAV allows it."""

    max_scansize: int = 400 * MiB
    max_filesize: int = 100 * MiB
    max_recursion: int = 17
    max_files: int = 10000
    max_scantime: int = 120000  # milliseconds
    max_html_normalize: int = 40 * MiB
    max_html_notags: int = 8 * MiB
    max_script_normalize: int = 20 * MiB
    alert_exceeds_max: bool = False

    def oversized(self, size: int) -> list[str] | None:
        """For an object over MaxFileSize, its result without reading it; None otherwise.

        Such an object is not scanned: clean, or the heuristic with AlertExceedsMax (§9.3).
        """
        if not self.max_filesize or size <= self.max_filesize:
            return None
        return ["Heuristics.Limits.Exceeded.MaxFileSize"] if self.alert_exceeds_max else []
