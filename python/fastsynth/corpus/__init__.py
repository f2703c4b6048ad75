"""Corpus I/O: readers, writers and the built-in corpus (being written)."""
