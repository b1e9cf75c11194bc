"""The public API of the package stays what __all__ says."""

from __future__ import annotations

import vigil


def test_all_names_resolve() -> None:
    for name in vigil.__all__:
        assert getattr(vigil, name) is not None


def test_public_names() -> None:
    assert sorted(vigil.__all__) == sorted(
        [
            "Database",
            "DatabaseOptions",
            "Engine",
            "Limits",
            "ScanOptions",
            "ScanResult",
            "__version__",
            "load_database",
            "load_engine",
        ]
    )
