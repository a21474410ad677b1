"""Typed, validated views of ``params.yaml`` sections.

Each stage builds the dataclasses of exactly the sections (or keys) it declares in
``dvc.yaml``. Unknown keys, missing keys, wrong types and out-of-range values are a
``UserError`` that names the parameter, raised before any work is done.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

from ruamel.yaml import YAML, YAMLError

from genrec.errors import UserError

T = TypeVar("T")


def load(path: str | Path = "params.yaml") -> dict[str, Any]:
    """``params.yaml`` read as DVC reads it: ruamel.yaml's safe loader, YAML 1.2 rules.

    PyYAML follows YAML 1.1, where ``1e-05`` (the spelling ``dvc exp run -S train.lr=0.00001``
    writes) is a string; under YAML 1.2 it is the number DVC meant.
    """
    path = Path(path)
    try:
        params = YAML(typ="safe").load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: run the stage from the repository root") from None
    except YAMLError as error:
        # One line: the problem and where, without ruamel's multi-line excerpt.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path} is not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    if not isinstance(params, dict):
        raise UserError(f"{path} must be a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str, cls: type[T], keys: list[str] | None = None) -> T:
    """Build ``cls`` from ``params[name]``; with ``keys``, read only those keys.

    ``keys`` serves stages that declare single keys of a shared section (the generation
    strategies), so that a stage never reads a param it does not depend on.
    """
    raw = params.get(name)
    if not isinstance(raw, dict):
        raise UserError(f"params.yaml: section '{name}' is missing or not a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(
            f"params.yaml: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
            f"known keys are {', '.join(sorted(fields))}"
        )
    wanted = keys if keys is not None else list(fields)
    hints = typing.get_type_hints(cls)
    values = {}
    for key in wanted:
        if key not in raw:
            if fields[key].default is not dataclasses.MISSING:
                continue
            raise UserError(f"params.yaml: {name}.{key} is missing")
        values[key] = _check_type(f"{name}.{key}", raw[key], hints[key])
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def _check_type(label: str, value: Any, hint: Any) -> Any:
    allowed = typing.get_args(hint) or (hint,)
    grids = [a for a in allowed if typing.get_origin(a) is list]  # ``float | list[float]``: a value or a grid
    scalars = tuple(a for a in allowed if isinstance(a, type))
    if grids and isinstance(value, list):
        if not value:
            raise UserError(f"params.yaml: {label} must be {_names(allowed)}, got an empty list")
        return [_check_type(label, item, typing.get_args(grids[0])[0]) for item in value]
    if float in scalars and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and bool not in scalars) or not isinstance(value, scalars):
        raise UserError(f"params.yaml: {label} must be {_names(allowed)}, got {value!r}")
    return value


_NAMES = {float: ("a number", "numbers"), int: ("an integer", "integers"), str: ("a string", "strings"),
          bool: ("true or false", "booleans")}


def _names(types: tuple) -> str:
    def name(t: Any) -> str:
        if typing.get_origin(t) is list:
            return f"a non-empty list of {_NAMES[typing.get_args(t)[0]][1]}"
        return _NAMES.get(t, (f"a {t.__name__}",))[0]
    return " or ".join(name(t) for t in types)


def require(condition: bool, label: str, message: str) -> None:
    """Raise a ``UserError`` about parameter ``label`` unless ``condition`` holds."""
    if not condition:
        raise UserError(f"params.yaml: {label} {message}")
