"""Fuzz target: the clamd.conf parser (vigil.config.parse_config) and start-up checks.

Bad configuration must end as ConfigError (file:line: option: reason), never as another
exception; a parsed Config must pass through validate() and the socket settings.
"""

from __future__ import annotations

from _harness import instrumented, main

with instrumented(__name__):
    from vigil.config import (
        clamd_message,
        listens_on_tcp,
        parse_config,
        socket_gid,
        socket_mode,
        validate,
    )
    from vigil.errors import ConfigError


def _quiet(_message: str) -> None:
    """Warnings are part of normal parsing; the fuzzer only cares about exceptions."""


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        cfg = parse_config(text, "clamd.conf", on_warning=_quiet)
    except ConfigError as exc:
        clamd_message(exc)
        return
    validate(cfg)
    listens_on_tcp(cfg)
    try:  # documented: ValueError for a mode that is not octal
        socket_mode(cfg)
    except ValueError:
        pass
    try:  # documented: KeyError for an unknown group name
        socket_gid(cfg)
    except KeyError:
        pass


if __name__ == "__main__":
    main(TestOneInput)
