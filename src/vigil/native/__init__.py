"""C decoders for formats no maintained Python library reads (one module per ``_*.c``).

Each takes the whole input as a bytes-like object and an output limit, checks every read
and write against the buffer bounds, releases the GIL while it works and returns what it
could decode: a damaged or truncated stream yields its decodable prefix, never a crash.
"""
