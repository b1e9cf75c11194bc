"""What a scan returns."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ScanResult"]


@dataclass(slots=True)
class ScanResult:
    """Detection names in the order ClamAV reports them (empty = clean)."""

    names: list[str] = field(default_factory=list)
    # heuristics libclamav records as "potentially unwanted" (limits, encryption): reported
    # after every other name, and in first-match mode only when nothing else was found
    weak: list[str] = field(default_factory=list)
    scanned_bytes: int = 0
    seconds: float = 0.0

    @property
    def infected(self) -> bool:
        return bool(self.names)
