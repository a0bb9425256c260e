"""Dataclass configs: YAML presets set the defaults, `key=value` overrides win, every value is type-checked.

Settings have flat names everywhere a user meets them (presets, key=value, config.json), also where the dataclass
nests a group of them (the search's method settings): `lam=0.5` reaches `SearchConfig.method_settings.lam`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rarts.errors import UsageError

T = TypeVar("T")

PRESET_DIR = Path(__file__).resolve().parent / "configs"


def load_preset(kind: str, name: str) -> dict[str, Any]:
    """The preset `name` for an entry point `kind` (search, train), from src/rarts/configs/{kind}_{name}.yaml."""
    path = PRESET_DIR / f"{kind}_{name}.yaml"
    if not path.exists():
        known = sorted(p.stem[len(kind) + 1 :] for p in PRESET_DIR.glob(f"{kind}_*.yaml"))
        raise UsageError(f"unknown {kind} preset {name!r}; known: {', '.join(known)}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise UsageError(f"preset {path} must hold a mapping")
    return data


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """Parse ['lr=0.1', 'epochs=3'] into {'lr': '0.1', 'epochs': '3'} (values typed later)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise UsageError(f"override {item!r} has an empty key")
        out[key] = value.strip()
    return out


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert `value` (from YAML or a key=value string) to the field's declared type, or raise UsageError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        return _coerce(name, value, non_none[0])
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"setting {name}: expected a list, got {value!r}")
        inner = args[0] if args else str
        items = [_coerce(name, v.strip() if isinstance(v, str) else v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise UsageError(f"setting {name}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise UsageError(f"setting {name}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"setting {name}: expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise UsageError(f"setting {name}: expected an integer, got {value!r}")
        return int(f)
    if annotation is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"setting {name}: expected a number, got {value!r}") from None
    if annotation is str:
        return str(value)
    return value


# Hints for an unknown setting that names a known one as another code base or an older rarts does (DARTS calls the
# final network's channels `init_channels` and `C`; some codes count cells as `cells`). They are only suggested:
# each setting has one name (a saved config.json with an older name is read through `old_names`, see below).
_OTHER_NAMES = {"init_channels": "channels", "C": "channels", "cells": "layers", "epoch": "epochs"}


def _suggestion(key: str, fields: set[str]) -> str:
    """' (did you mean X?)' for an unknown setting that names a known one differently or misspells it, else ''."""
    import difflib

    other = _OTHER_NAMES.get(key)
    guess = other if other in fields else next(iter(difflib.get_close_matches(key, sorted(fields), n=1)), None)
    return f" (did you mean {guess}?)" if guess else ""


def _leaves(cls: type) -> dict[str, tuple[tuple[str, ...], Any, dataclasses.Field]]:
    """Every setting of `cls` by its flat name: (path of nested dataclass fields, type, field). A field whose type is
    a dataclass (the search's method settings) contributes its own fields under their names."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[tuple[str, ...], Any, dataclasses.Field]] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            for name, (path, hint, leaf) in _leaves(hints[f.name]).items():
                out[name] = ((f.name, *path), hint, leaf)
        else:
            out[f.name] = ((), hints[f.name], f)
    return out


def setting_names(cls: type) -> list[str]:
    """The flat names of every setting of `cls`, as key=value overrides, presets and config.json spell them."""
    return list(_leaves(cls))


def _construct(cls: type, values: dict[str, Any]) -> Any:
    """`cls` from flat values, each nested dataclass built from the values of its own fields."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _construct(hints[f.name], values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def current_names(cls: type, settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with every older name of a setting of `cls` (its field's metadata `old_names`) replaced by the
    current one, as a config.json written by an older rarts is read."""
    renamed = {old: name for name, (_, _, f) in _leaves(cls).items() for old in f.metadata.get("old_names", ())}
    return {renamed.get(key, key): value for key, value in settings.items()}


def build_config(cls: type[T], *layers: dict[str, Any]) -> T:
    """Build dataclass `cls` from flat dict layers (later layers win), type-checking, rejecting unknown keys and
    validating once. A field's metadata `old_names` lists names an older config.json may use for it."""
    leaves = _leaves(cls)
    fields = set(leaves)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in current_names(cls, layer or {}).items():
            if value is None:  # an unset command-line flag: keep the earlier layer's value
                continue
            if key not in fields:
                raise UsageError(
                    f"unknown setting {key!r}{_suggestion(key, fields)}; known: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(key, value, leaves[key][1])
    cfg = _construct(cls, values)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The flat {setting: value} of a config (nested dataclasses flattened), as config.json holds it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(config_to_dict(value))
        else:
            out[f.name] = value
    return out
