"""Fuzz target: the freshclam.conf parser (vigil.config.freshclam)."""

from __future__ import annotations

from _harness import instrumented, main

with instrumented(__name__):
    from vigil.config.freshclam import parse_freshclam_config
    from vigil.errors import ConfigError


def _quiet(_message: str) -> None:
    """Warnings are part of normal parsing; the fuzzer only cares about exceptions."""


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        cfg = parse_freshclam_config(text, "freshclam.conf", on_warning=_quiet)
    except ConfigError:
        return
    cfg.mirrors()


if __name__ == "__main__":
    main(TestOneInput)
