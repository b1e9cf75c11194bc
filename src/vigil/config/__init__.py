"""clamd.conf support: the option table, a typed Config, the parser and start-up checks.

Pure apart from reading the one file in ``load_config``; imports only ``vigil.errors``.
"""

from __future__ import annotations

from vigil.config.model import Config
from vigil.config.options import OPTIONS, SIZE_LIMIT, Option, OptionType, OptionValue, Tool
from vigil.config.parser import clamd_message, defaults, load_config, parse_config
from vigil.config.validation import listens_on_tcp, socket_gid, socket_mode, validate

__all__ = [
    "OPTIONS",
    "SIZE_LIMIT",
    "Config",
    "Option",
    "OptionType",
    "OptionValue",
    "Tool",
    "clamd_message",
    "defaults",
    "listens_on_tcp",
    "load_config",
    "parse_config",
    "socket_gid",
    "socket_mode",
    "validate",
]
