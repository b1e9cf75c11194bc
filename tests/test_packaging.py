"""The package data that a non-editable install needs (the built-in database, the file-type
table, the C decoders' shared header) is declared in pyproject.toml: an editable install
would hide a missing declaration, a wheel would not."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "vigil"


def test_every_data_file_is_declared() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["vigil"]
    needed = [p for p in (PACKAGE / "data").rglob("*") if p.is_file()]
    needed += list((PACKAGE / "native").glob("*.h"))
    assert needed
    for path in needed:
        rel = path.relative_to(PACKAGE).as_posix()
        # setuptools globs do not cross directories with "*"
        assert any(
            fnmatch.fnmatch(rel, pat) and rel.count("/") == pat.count("/") for pat in patterns
        ), rel
