"""The clamd wire protocol, sans I/O: framing and reply strings shared by server and client."""
