"""What a task accepts, read from its signature, and typed values from text.

Used by the ``%%mushin_sweep`` magic (to check a line against the task) and by
the panel (one value picker per parameter). Imports neither panel nor IPython.
"""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TaskParam", "task_params", "task_of", "parse_values", "coerce", "format_values"]

_EMPTY = inspect.Parameter.empty


@dataclass
class TaskParam:
    """One parameter of a task.

    ``kind`` is one of ``"float"``, ``"int"``, ``"bool"``, ``"choice"`` (a
    ``Literal`` or an ``Enum``: ``choices`` holds the options), ``"str"`` and
    ``"any"`` (no usable annotation).
    """

    name: str
    kind: str
    default: Any = _EMPTY
    annotation: Any = _EMPTY
    choices: list[Any] = field(default_factory=list)

    @property
    def required(self) -> bool:
        return self.default is _EMPTY

    def describe(self) -> str:
        ann = self.kind
        if self.kind == "choice":
            ann = "{" + ", ".join(repr(c) for c in self.choices) + "}"
        text = f"{self.name}: {ann}"
        if not self.required:
            text += f" = {self.default!r}"
        return text


def task_of(obj: Any) -> Callable[..., Any]:
    """The task function of a workflow class or instance, or the function itself."""
    task = getattr(obj, "task", None)
    if task is not None and (inspect.isclass(obj) or not inspect.isfunction(obj)):
        return task
    if callable(obj):
        return obj
    raise TypeError(f"{obj!r} is neither a task function nor a workflow (a class with a static `task`).")


def _unwrap_optional(ann: Any) -> Any:
    origin = typing.get_origin(ann)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _kind(ann: Any) -> tuple[str, list[Any]]:
    ann = _unwrap_optional(ann)
    if ann is _EMPTY or ann is Any:
        return "any", []
    if typing.get_origin(ann) is typing.Literal:
        return "choice", list(typing.get_args(ann))
    if inspect.isclass(ann) and issubclass(ann, enum.Enum):
        # Hydra passes plain values: an Enum parameter is swept by member name
        return "choice", [m.name for m in ann]
    if ann is bool:
        return "bool", []
    if ann is int:
        return "int", []
    if ann is float:
        return "float", []
    if ann is str:
        return "str", []
    return "any", []


def task_params(obj: Any) -> tuple[list[TaskParam], bool]:
    """``(parameters, accepts_any_keyword)`` of a task function or workflow.

    Examples
    --------
    >>> from typing import Literal
    >>> def task(lr: float, seed: int = 0, opt: Literal["sgd", "adam"] = "sgd", flag: bool = False):
    ...     pass
    >>> ps, extra = task_params(task)
    >>> [p.describe() for p in ps]
    ['lr: float', 'seed: int = 0', "opt: {'sgd', 'adam'} = 'sgd'", 'flag: bool = False']
    """
    fn = task_of(obj)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back on raw annotations
        hints = {}
    sig = inspect.signature(fn)
    out: list[TaskParam] = []
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        ann = hints.get(p.name, p.annotation)
        kind, choices = _kind(ann)
        default = p.default
        if isinstance(default, enum.Enum):
            default = default.name
        out.append(TaskParam(p.name, kind, default, ann, choices))
    return out, var_kw


def accepted_text(params: Sequence[TaskParam], var_kw: bool = False) -> str:
    """``"lr: float, seed: int = 0"`` (for error messages)."""
    text = ", ".join(p.describe() for p in params) or "no parameters"
    if var_kw:
        text += " (and any other name, through **kwargs)"
    return text


# --------------------------------------------------------------------------- values


def parse_values(text: str, *, name: str = "value") -> list[Any]:
    """Values typed in Hydra's override grammar -> a list of Python values.

    ``"0.01, 0.1, 1"``, ``"range(0, 10, 2)"``, ``"choice(a, b)"``, ``"'a,b', c"``
    (quotes keep a comma inside one string), or one value.

    Examples
    --------
    >>> parse_values("0.01, 0.1, 1")
    [0.01, 0.1, 1]
    >>> parse_values("range(3)")
    [0, 1, 2]
    >>> parse_values("'a,b', c")
    ['a,b', 'c']
    >>> parse_values("")
    []
    """
    from .._overrides import OverrideError, override_values, parse_override

    text = text.strip()
    if not text:
        return []
    try:
        o = parse_override(f"{name}={text}")
    except OverrideError as e:
        msg = str(e).split(": ", 1)[-1]
        raise ValueError(
            f"{name}: cannot read {text!r} ({msg}). Write values separated by commas, "
            "e.g. 0.01, 0.1, 1 or range(0, 10, 2); quote a string that holds a comma."
        ) from None

    if o.is_sweep_override() and not o.is_discrete_sweep():
        raise ValueError(
            f"{name}: {text!r} is an interval, which has no list of values; give a list "
            "or range(start, stop, step)."
        )
    return override_values(o)


def coerce(value: Any, p: TaskParam) -> Any:
    """One value -> the parameter's type; ``ValueError`` naming it if it does not fit."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{p.name}: {value!r} is not {what}; {p.describe()} expects {what}.")

    if p.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if p.kind == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise bad("an integer")
        return value
    if p.kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if p.kind == "str":
        if isinstance(value, (list, dict)) or value is None:
            raise bad("a string")
        return str(value)
    if p.kind == "choice":
        if value in p.choices:
            return value
        for c in p.choices:  # "1" typed for Literal[1]
            if str(c) == str(value):
                return c
        raise bad("one of " + ", ".join(repr(c) for c in p.choices))
    return value


def format_values(values: Sequence[Any]) -> str:
    """The inverse of :func:`parse_values` for an editable text field.

    >>> format_values([0.01, 0.1, 1.0])
    '0.01, 0.1, 1.0'
    >>> format_values(["a,b", "c"])
    "'a,b', 'c'"
    """
    from mushin_nb._sweep import render_value

    return ", ".join(render_value(v) for v in values)
