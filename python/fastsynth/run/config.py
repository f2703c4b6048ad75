"""Stage configs: one frozen dataclass per stage, read from TOML or generated CLI flags.

A config field is declared once, with its default and its help text::

    threshold: float = option(0.8, "Jaccard threshold in (0, 1]")

and everything else derives from that declaration: :func:`add_arguments` turns the
fields into ``--flags`` (``threshold`` -> ``--threshold``; a bool ``x`` with default
False -> ``--x``, with default True -> ``--no-x``), :func:`from_mapping` builds the
config from a TOML table and rejects unknown keys naming the key and the file, and
:func:`as_dict` is what the run's manifest records (and compares on resume). Checks live
in each dataclass's ``__post_init__`` only (docs/architecture.md, "Stage configs").
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Literal, get_args, get_origin

from fastsynth.errors import ConfigError

_HELP = "fastsynth.help"


def option(default: Any, help: str, *, flag: bool = True) -> Any:
    """A config field with ``default`` and ``help``; ``flag=False`` keeps it out of the CLI
    (TOML only, e.g. tables)."""
    meta = {_HELP: help, "flag": flag}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get(_HELP, "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (from TOML or a flag string) as type ``tp``; ConfigError naming ``where``."""
    base, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    origin = get_origin(base)
    try:
        if origin is Literal:
            choices = get_args(base)
            if value not in choices:
                raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
            return value
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            args = get_args(base)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], where) for v in items)
            if len(items) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(items, args))
        if origin is dict or base is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a table, got {value!r}")
            return dict(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ConfigError(f"{where}: expected a number, got {value!r}")
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a string, got {value!r}")
            return value
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where}: {value!r} is not a valid {getattr(base, '__name__', base)}") from None
    return value


def from_mapping(cls: type, data: dict[str, Any], source: str) -> Any:
    """``cls(**data)`` with values coerced to the field types; an unknown key raises
    ConfigError naming it and ``source`` (e.g. ``"run.toml [dedup]"``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(fields))})")
    hints = _hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{source}: {k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def as_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON values (tuples -> lists), as the manifest records it."""
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, *, prefix: str = "",
                  skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per field of ``cls`` (``--<prefix><name>`` with ``_`` -> ``-``).
    Defaults stay in the dataclass: every flag defaults to ``argparse.SUPPRESS`` so only
    the flags a user gave reach :func:`from_args`."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("flag", True):
            continue
        tp, _ = _strip_optional(hints[f.name])
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        name = "--" + (prefix + f.name).replace("_", "-")
        text = help_of(f)
        if tp is bool:
            if default:
                parser.add_argument("--no-" + (prefix + f.name).replace("_", "-"), dest=prefix + f.name,
                                    action="store_false", default=argparse.SUPPRESS, help=text)
            else:
                parser.add_argument(name, dest=prefix + f.name, action="store_true",
                                    default=argparse.SUPPRESS, help=text)
            continue
        kwargs: dict[str, Any] = {"dest": prefix + f.name, "default": argparse.SUPPRESS,
                                  "help": f"{text} (default {_show(default)})"}
        if get_origin(tp) is Literal:
            kwargs["choices"] = get_args(tp)
        parser.add_argument(name, **kwargs)


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def from_args(cls: type, args: argparse.Namespace, *, prefix: str = "", base: Any = None,
              source: str = "command line") -> Any:
    """``base`` (or the defaults) with the fields given as flags replaced."""
    given = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
             if hasattr(args, prefix + f.name)}
    hints = _hints(cls)
    coerced = {k: _coerce(v, hints[k], f"{source}: --{(prefix + k).replace('_', '-')}")
               for k, v in given.items()}
    if base is None:
        return cls(**coerced)
    return dataclasses.replace(base, **coerced)


def check(cond: bool, name: str, message: str) -> None:
    """Raise ConfigError ``"<name> <message>"`` unless ``cond`` (for ``__post_init__``)."""
    if not cond:
        raise ConfigError(f"{name} {message}")


__all__ = ["option", "from_mapping", "as_dict", "add_arguments", "from_args", "check", "dataclass"]
