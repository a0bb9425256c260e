"""Dataclass configs: YAML presets set the defaults, `key=value` overrides win, every value is type-checked."""

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


# The same thing named differently by the search and the training settings (DARTS's names: the supernet has
# `channels`, the final network `init_channels`; both count cells as `layers`).
_OTHER_NAMES = {"channels": "init_channels", "init_channels": "channels", "cells": "layers", "epoch": "epochs"}


def _suggestion(key: str, fields: set[str]) -> str:
    """' (did you mean X?)' for an unknown setting that names a known one differently or misspells it, else ''."""
    import difflib

    other = _OTHER_NAMES.get(key)
    guess = other if other in fields else next(iter(difflib.get_close_matches(key, sorted(fields), n=1)), None)
    return f" (did you mean {guess}?)" if guess else ""


def build_config(cls: type[T], *layers: dict[str, Any]) -> T:
    """Build dataclass `cls` from dict layers (later layers win), type-checking and rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:  # an unset command-line flag: keep the earlier layer's value
                continue
            if key not in fields:
                raise UsageError(
                    f"unknown setting {key!r}{_suggestion(key, fields)}; known: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(key, value, hints[key])
    cfg = cls(**values)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
