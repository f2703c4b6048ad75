"""Prompt templates, shipped as versioned package data (``fastsynth/synth/prompts/*.txt``).

Each file starts with a header (``version: N``), a line ``---``, then the template body
with ``$name`` placeholders (:class:`string.Template`, so braces in documents are
harmless). A prompt's id is ``"<name>/v<version>"``; that id goes into every record's
provenance, so changing a template's wording must bump its version.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from fastsynth.errors import ConfigError

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class Prompt:
    """One versioned template. ``render(**values)`` returns a one-message chat request."""

    name: str
    version: int
    template: str

    @property
    def id(self) -> str:
        return f"{self.name}/v{self.version}"

    def text(self, **values: object) -> str:
        try:
            return string.Template(self.template).substitute({k: str(v) for k, v in values.items()})
        except KeyError as e:
            raise ConfigError(f"prompt {self.id} needs the value {e.args[0]!r}") from None

    def render(self, **values: object) -> Chat:
        return [{"role": "user", "content": self.text(**values)}]


def _parse(name: str, raw: str) -> Prompt:
    head, sep, body = raw.partition("\n---\n")
    if not sep:
        raise ConfigError(f"prompt file {name}.txt has no '---' line after its header")
    fields = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
    try:
        version = int(fields["version"].strip())
    except (KeyError, ValueError):
        raise ConfigError(f"prompt file {name}.txt: header needs 'version: <int>'") from None
    return Prompt(name=name, version=version, template=body.rstrip("\n"))


@lru_cache(maxsize=None)
def load(name: str) -> Prompt:
    """The prompt ``name`` (file ``prompts/<name>.txt``)."""
    path = resources.files("fastsynth.synth").joinpath("prompts", f"{name}.txt")
    if not path.is_file():
        raise ConfigError(f"unknown prompt {name!r}: no prompts/{name}.txt in fastsynth.synth")
    return _parse(name, path.read_text(encoding="utf-8"))
