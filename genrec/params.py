"""Typed, validated views of ``params.yaml`` sections.

Each section is a pydantic model (a ``Section``) in the module that uses it; each stage builds
the models of exactly the sections (or keys) it declares in ``dvc.yaml``. ``params.yaml`` is
the only source of values: the models have no defaults. Unknown keys, missing keys, wrong
types and out-of-range values are a one-line ``UserError`` that names the parameter and the
value it got, raised before any work is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError
from pydantic.fields import FieldInfo
from ruamel.yaml import YAML, YAMLError

from genrec.errors import UserError


class Section(BaseModel):
    """A section of ``params.yaml``: one field per key, every key required (``GenerationParams``
    alone holds None for the keys a stage does not read).

    Strict: ``true`` is not an integer and ``"5"`` is not a number; a float key takes a YAML
    integer (``lr: 1``) as the float it means. Frozen: a stage cannot change what it read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


S = TypeVar("S", bound=Section)

# The constrained types the sections share.
AtLeast1 = Annotated[int, Field(ge=1)]
AtLeast0 = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Dropout = Annotated[float, Field(ge=0, lt=1)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


def require_multiple(section: str, params: Section, key: str, of: str) -> None:
    """For a section's own validator: ``params.<key>`` must be a whole multiple of ``params.<of>``
    (a ``ValueError`` that ``section`` turns into its one-line message, naming both keys)."""
    value, unit = getattr(params, key), getattr(params, of)
    if value % unit:
        raise ValueError(f"{section}.{key} ({value}) must be a multiple of {section}.{of} ({unit})")


def _value_or_grid(value: Any) -> str:
    return "grid" if isinstance(value, list) else "value"


def value_or_grid(item: Any) -> Any:
    """The type of a tunable key: one ``item`` or a non-empty list of them (a grid), each
    ``item`` checked the same way. Validation errors name the branch: ``(key, "value")`` or
    ``(key, "grid", index)``."""
    return Annotated[
        Union[Annotated[item, Tag("value")], Annotated[list[item], Field(min_length=1), Tag("grid")]],
        Discriminator(_value_or_grid),
    ]


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


def section(params: dict[str, Any], name: str, cls: type[S], keys: list[str] | None = None) -> S:
    """Build ``cls`` from ``params[name]``; with ``keys``, read only those keys.

    ``keys`` serves stages that declare single keys of a shared section (the generation
    strategies), so that a stage never reads a param it does not depend on: the other keys
    are neither checked nor passed on, and the model holds None for them.
    """
    raw = params.get(name)
    if not isinstance(raw, dict):
        raise UserError(f"params.yaml: section '{name}' is missing or not a mapping")
    fields = cls.model_fields
    wanted = list(fields) if keys is None else list(keys)
    if not set(wanted) <= set(fields):
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(sorted(set(wanted) - set(fields)))}")
    data = {key: value for key, value in raw.items() if key in wanted or key not in fields}
    try:
        obj, errors = cls.model_validate(data), []
    except ValidationError as error:
        obj, errors = None, error.errors()
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        raise UserError(f"params.yaml: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                        f"known keys are {', '.join(sorted(fields))}")
    # Checked here, not by the model: a key of GenerationParams that is left out is None.
    missing = [key for key in wanted if key not in raw]
    if missing:
        raise UserError(f"params.yaml: {name}.{missing[0]} is missing")
    if errors:
        raise UserError(f"params.yaml: {_problem(cls, name, errors[0])}")
    return obj


def _problem(cls: type[Section], name: str, error: dict[str, Any]) -> str:
    """One pydantic error of section ``name`` (model ``cls``) as ``<name>.<key> <what is wrong>,
    got <value>``."""
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx", {})
    if kind == "value_error":  # a validator's own check: its message names the key(s) and the value
        return str(ctx["error"])
    key = f"{name}.{loc[0]}" if loc else name
    value = error.get("input")
    got = "an empty list" if value == [] else repr(value)
    if kind == "missing":
        return f"{key} is missing"
    if kind == "extra_forbidden":
        return f"unknown key {key}"
    base, metadata = _annotation_at(cls, loc)
    if kind == "literal_error":
        return f"{key} must be {ctx['expected']}, got {got}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{key} must be {_range(metadata)}, got {got}"
    if kind.endswith("_type") or kind == "too_short":
        # The whole value of a grid key (loc (key, branch)) may be either; an item of it (loc (key, "grid", i)) one.
        if len(loc) == 2 and loc[1] in ("value", "grid"):
            item, _ = _annotation_at(cls, (loc[0], "value"))
            return f"{key} must be {_noun(item)} or a non-empty list of {_noun(item, plural=True)}, got {got}"
        return f"{key} must be {_noun(base)}, got {got}"
    return f"{key}: {error['msg']}, got {got}"


_NOUNS = {float: ("a number", "numbers"), int: ("an integer", "integers"), str: ("a string", "strings"),
          bool: ("true or false", "booleans")}


def _noun(annotation: Any, plural: bool = False) -> str:
    return _NOUNS.get(annotation, (f"a {getattr(annotation, '__name__', annotation)}",) * 2)[plural]


def _unwrap(annotation: Any) -> tuple[Any, list]:
    """``Annotated[T, ...]`` as ``T`` and its flattened metadata (constraints, tags)."""
    metadata: list = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata += [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
    return annotation, metadata


def _annotation_at(cls: type[Section], loc: tuple) -> tuple[Any, list]:
    """The type (and its constraints) that an error at ``loc`` of ``cls`` is about."""
    field = cls.model_fields.get(loc[0]) if loc else None
    if field is None:
        return None, []
    annotation, metadata = field.annotation, list(field.metadata)
    for part in loc[1:]:
        if isinstance(part, str):  # a branch of value_or_grid, named by its tag
            annotation = next(a for a in get_args(annotation) if Tag(part) in _unwrap(a)[1])
        else:  # an item of a list
            annotation = get_args(annotation)[0]
        annotation, metadata = _unwrap(annotation)
    return annotation, metadata


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range(metadata: list) -> str:
    """``at least 1``, ``between 1 and 1000``, ``in [0, 1)``: every bound on the value."""
    bounds = {b: getattr(m, b) for m in metadata for b in ("gt", "ge", "lt", "le") if getattr(m, b, None) is not None}
    low = next(((b, bounds[b]) for b in ("ge", "gt") if b in bounds), None)
    high = next(((b, bounds[b]) for b in ("le", "lt") if b in bounds), None)
    if low and high:
        lo, hi = _number(low[1]), _number(high[1])
        return {("ge", "le"): f"between {lo} and {hi}", ("gt", "lt"): f"strictly between {lo} and {hi}",
                ("ge", "lt"): f"in [{lo}, {hi})", ("gt", "le"): f"in ({lo}, {hi}]"}[low[0], high[0]]
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    bound = low or high
    return f"{words[bound[0]]} {_number(bound[1])}"


def require(condition: bool, label: str, message: str) -> None:
    """Raise a ``UserError`` about parameter ``label`` unless ``condition`` holds (the checks
    that need more than ``params.yaml``: the model's window, the catalogue)."""
    if not condition:
        raise UserError(f"params.yaml: {label} {message}")
