"""What a task accepts, read from its signature, and the check of a sweep against it.

The engine checks every sweep against its task before anything runs (unknown
names, missing required values, values of the wrong type), so ``wf.run(...)``,
``wf.start(...)``, the magic and the panel give the same answer; each surface
phrases it in its own terms.

Examples
--------
>>> def task(lr: float, seed: int = 0) -> dict: ...
>>> check_sweep_against_task([task], names={"lr": [0.1, "x"]}, base_cfg=None, label="task")
Traceback (most recent call last):
...
mushin_nb._signature.TaskArgumentError: lr: 'x' is not a number; lr: float expects a number. task accepts: lr: float, seed: int = 0
"""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TaskParam",
    "TaskArgumentError",
    "task_of",
    "task_params",
    "accepted_text",
    "coerce",
    "check_sweep_against_task",
]

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


class TaskArgumentError(ValueError):
    """A sweep that does not fit its task's signature. ``problems`` lists each
    mistake; ``accepts`` says what the task takes."""

    def __init__(self, problems: list[str], accepts: str):
        super().__init__(" ".join(problems) + f" {accepts}")
        self.problems = problems
        self.accepts = accepts


def _allows_none(p: TaskParam) -> bool:
    if p.default is None:
        return True
    origin = typing.get_origin(p.annotation)
    return origin is typing.Union and type(None) in typing.get_args(p.annotation)


def check_sweep_against_task(
    fns: Sequence[Callable[..., Any]],
    *,
    names: Mapping[str, Sequence[Any]],
    base_cfg: Any,
    label: str,
    groups: Iterable[str] = (),
    allow_unknown: bool = False,
) -> None:
    """Check the values a sweep gives (``names``: parameter -> its values) against the
    signatures of ``fns`` (the task, and ``pre_task``): every name is a parameter of
    one of them (unless one takes ``**kwargs``), every value fits its annotation, and
    every required parameter has a value here or in ``base_cfg``. With
    ``allow_unknown`` (the API, as rai mushin: a name the task does not take still
    labels a coordinate of the Dataset) other names pass. Raises
    :class:`TaskArgumentError` naming each problem and what the task accepts."""
    from ._overrides import has_node

    params: dict[str, TaskParam] = {}
    var_kw = False
    for fn in fns:
        ps, vk = task_params(fn)
        var_kw = var_kw or vk
        for p in ps:
            params.setdefault(p.name, p)
    shown = [p for p in params.values() if not p.name.startswith("zen_")]
    accepts = f"{label} accepts: {accepted_text(shown, var_kw)}"
    given = set(names) | set(groups)
    problems: list[str] = []
    for name, values in names.items():
        top = name.split(".")[0]
        p = params.get(top)
        if p is None:
            if not var_kw and not allow_unknown and top not in groups:
                problems.append(f"{name!r} is not a parameter of {label}.")
            continue
        if name != top:
            continue
        for v in values:
            if v is None and _allows_none(p):
                continue
            try:
                coerce(v, p)
            except ValueError as e:
                problems.append(f"{e}")
                break
    missing = [
        p.name
        for p in params.values()
        if p.required
        and p.name not in given
        and not has_node(base_cfg, p.name)
        and not p.name.startswith("zen_")
    ]
    if missing:
        problems.append(
            f"No value for the required parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
            f"give {', '.join(m + '=...' for m in missing)}."
        )
    if problems:
        raise TaskArgumentError(problems, accepts)
