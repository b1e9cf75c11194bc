"""NSIS' deflate (stored blocks without ~LEN) and header-less bzip2 (C)."""

class Stream:
    """Pull decoder over one NSIS ``"deflate"`` or ``"bzip2"`` stream."""

    def __init__(self, data: bytes, kind: str) -> None: ...
    def read(self, n: int, /) -> bytes:
        """Up to ``n`` decoded bytes; fewer at the end or where the stream breaks."""
    @property
    def eof(self) -> bool: ...
    @property
    def failed(self) -> bool: ...
