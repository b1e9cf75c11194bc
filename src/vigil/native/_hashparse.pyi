def parse_block(
    data: bytes | bytearray,
    start: int,
    end: int,
    size_first: bool,
    star_min_fl: int,
    flevel: int,
    max_line: int,
    max_size: int,
    suffix: bytes,
    ignored: tuple[bytes, ...],
    /,
) -> tuple[int, list[tuple[int, bytes, bytes, bytes, bytes]]] | int: ...
def sort_digests(parts: list[bytes], width: int, /) -> tuple[bytes, bytes]: ...
