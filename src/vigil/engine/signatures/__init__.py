"""Pure parsers, one per database format: text lines in, signature objects out."""
