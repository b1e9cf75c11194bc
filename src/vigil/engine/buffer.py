"""The type of what the engine scans: bytes, or a file mapped read-only (never copied)."""

from __future__ import annotations

import mmap

__all__ = ["Buffer"]

Buffer = bytes | mmap.mmap
