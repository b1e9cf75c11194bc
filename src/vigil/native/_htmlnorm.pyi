from collections.abc import Callable

def normalise(
    data: bytes, want_notags: bool, limit: int, script_sink: Callable[[bytes | None], object], /
) -> tuple[bytes, bytes | None]: ...
