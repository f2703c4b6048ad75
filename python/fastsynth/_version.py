"""The package version, in a module of its own so anything can read it without
importing the rest of fastsynth (kept equal to ``pyproject.toml``'s; tests check)."""
__version__ = "0.1.0"
