"""The local knowledge index: what this computer has (PATH programs, man pages, `--help`), the
user's redacted history, tldr pages and request/command pairs, searched with BM25 to ground
suggestions (`index`), plus the option checks used to validate them (`flags`, `validate`)."""
