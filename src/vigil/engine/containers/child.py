"""What an unpacker yields: one extracted object and the metadata .cdb signatures test."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.engine.filetype import FileType

__all__ = ["Child"]


@dataclass(frozen=True, slots=True)
class Child:
    """One member: its data (cut at the size limit: ``oversized``) and the metadata that
    .cdb signatures test (compressed and real size, encryption)."""

    name: str
    data: bytes
    oversized: bool = False
    compressed: int = -1  # -1: same as the real size
    real: int = -1
    encrypted: bool = False
    ftype: FileType | None = None  # set when the container knows the type (else detected)
