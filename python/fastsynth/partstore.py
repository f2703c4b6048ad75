"""A manifest-backed store of finished parts: what every run directory shares.

A store is a folder with ``manifest.json`` at its root. The manifest records the
``config`` the folder was written for and, in groups at fixed key paths inside it, the
finished parts (part name -> what the part reported). Rules (docs/architecture.md,
"Run directory"):

- every file, the manifest included, is written through :mod:`fastsynth.atomic`
  (temporary sibling + rename), and temporary files left by killed writers are swept
  when the store is opened;
- a part counts as finished only once the manifest lists it: a part file written but
  not listed (the writer was killed between the two) is never read and is redone;
- opening a folder that holds another config is refused with a ConfigError naming the
  differing keys (dotted, ``stage.key``); with a ``format``, a manifest written by
  another fastsynth version or format is refused too;
- :meth:`PartStore.check_damaged` finds listed parts whose Parquet files are unreadable
  and either names the first in an InputError or forgets them so they are redone.

The synthesis run directory (:mod:`fastsynth.synth.rundir`, one group ``parts``) and the
run layer's (:mod:`fastsynth.run.rundir`, a group per stage and phase) build on it; each
keeps its own layout of part files. A group is a tuple of manifest keys, e.g.
``("parts",)`` or ``("stages", "dedup", "phases", "sig")``.
"""
from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastsynth._version import __version__
from fastsynth.atomic import atomic_write_text, sweep_temps
from fastsynth.errors import ConfigError, InputError

MANIFEST = "manifest.json"

Group = tuple[str, ...]

__all__ = ["MANIFEST", "PartStore", "config_diff", "versions"]


def versions() -> dict[str, str]:
    """The versions a manifest with a ``format`` records (fastsynth's is checked on open)."""
    import numpy
    import pyarrow

    return {"fastsynth": __version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "pyarrow": pyarrow.__version__}


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like configs, sorted."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += config_diff(old.get(k, _ABSENT), new.get(k, _ABSENT), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "config"]


_ABSENT = "<absent>"


class PartStore:
    """A folder of finished parts listed in ``manifest.json``, opened for one ``config``.

    Args:
        root: the folder (created if missing; an existing file there is refused).
        config: plain JSON the folder must have been written for (a new folder records it).
        overwrite: start a new manifest even if one exists (old part files stay but are
            unlisted, so they are never read; a subclass may remove them).
        fresh: further keys of a new manifest (e.g. ``{"parts": {}}``).
        format: when given, a new manifest records ``format`` and :func:`versions`, and an
            existing one must carry the same format and fastsynth version.
        what: how errors call the folder ("run directory", "output").
        remedy: what errors tell the user to do ("use a new run directory or --overwrite").
    """

    def __init__(self, root: str | os.PathLike, config: Any, *, overwrite: bool = False,
                 fresh: dict[str, Any] | None = None, format: int | None = None,
                 what: str = "run directory", remedy: str = "use a new run directory or --overwrite"):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"{what} {self.root} exists and is not a directory")
        path = self.root / MANIFEST
        if path.exists() and not overwrite:
            try:
                self.manifest = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"{path}: unreadable manifest ({e}); {remedy}") from None
            if format is not None:
                got = (self.manifest.get("format"), self.manifest.get("versions", {}).get("fastsynth"))
                if got != (format, __version__):
                    raise ConfigError(f"{path}: written by fastsynth {got[1]} (run format {got[0]}); "
                                      f"this is fastsynth {__version__} (format {format}): {remedy}")
            diff = config_diff(self.manifest.get("config", {}), config)
            if diff:
                raise ConfigError(f"{self.root} holds a run with another config (differs in: "
                                  f"{', '.join(diff)}); {remedy}")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            head: dict[str, Any] = {"format": format, "versions": versions()} if format is not None else {}
            self.manifest = {**head, "config": config, **(fresh or {})}
            self.save()
        sweep_temps(self.root)

    def save(self) -> None:
        """Replace ``manifest.json`` atomically with the manifest as it is now."""
        atomic_write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=1, sort_keys=True))

    # -- parts ------------------------------------------------------------------------------
    def _group(self, group: Group, create: bool) -> dict[str, Any] | None:
        node: Any = self.manifest
        for key in group:
            if not isinstance(node, dict):
                return None
            if key not in node:
                if not create:
                    return None
                node[key] = {}
            node = node[key]
        return node

    def listed(self, group: Group) -> dict[str, Any]:
        """The finished parts of ``group`` (name -> info), in part order."""
        found = self._group(group, create=False) or {}
        return {k: found[k] for k in sorted(found)}

    def is_listed(self, group: Group, part: str) -> bool:
        return part in (self._group(group, create=False) or {})

    def record(self, group: Group, part: str, info: Any) -> None:
        """List ``part`` (its files already in place) and save: this is the part's commit."""
        self._group(group, create=True)[part] = info
        self.save()

    def check_damaged(self, group: Group, files: Callable[[str], Iterable[Path]], *, redo: bool,
                      hint: str) -> list[str]:
        """Check that every listed part of ``group`` has readable Parquet files (footer and
        schema); ``files(part)`` names a part's files (missing ones are skipped). With
        ``redo``, damaged parts are unlisted, their files removed and the manifest saved;
        returns their names. Without it, an InputError names the first damaged part and
        its file, followed by ``hint``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        damaged = []
        for part in self.listed(group):
            for f in files(part):
                if not f.exists():
                    continue
                try:
                    pq.read_metadata(f)
                except (pa.ArrowInvalid, OSError) as e:
                    damaged.append((part, f, e))
        if not damaged:
            return []
        if not redo:
            part, f, e = damaged[0]
            more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
            raise InputError(f"finished part {part!r}{more} is damaged ({e}); {hint}", source=str(f))
        listed = self._group(group, create=False) or {}
        for part, f, _ in damaged:
            listed.pop(part, None)
            f.unlink(missing_ok=True)
        self.save()
        return sorted({part for part, _, _ in damaged})
