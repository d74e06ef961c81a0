"""Tasks and typed values from text, for the magic's line and the panel's fields.

What a task accepts (``TaskParam``, ``task_params``, ``coerce``) is the engine's
(``mushin_nb._signature``), re-exported here; :func:`make_workflow` turns what a
user names (a function, a workflow class or instance) into a workflow. Imports
neither panel nor IPython.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from .._signature import TaskParam, accepted_text, coerce, task_of, task_params

__all__ = [
    "TaskParam",
    "task_params",
    "task_of",
    "accepted_text",
    "parse_values",
    "coerce",
    "format_values",
    "make_workflow",
    "task_label",
]

_LABEL = "_mushin_label"  # the class attribute make_workflow gives a wrapped function


def make_workflow(obj: Any) -> Any:
    """A workflow instance from a workflow class, instance or a plain task
    function (wrapped in a ``MultiRunMetricsWorkflow`` subclass named after it).

    Examples
    --------
    >>> def square(x: int) -> dict:
    ...     return dict(y=x * x)
    >>> wf = make_workflow(square)
    >>> type(wf).__name__, task_label(wf), wf.task(3)
    ('square', 'square()', {'y': 9})
    """
    from .. import BaseWorkflow, MultiRunMetricsWorkflow

    if isinstance(obj, BaseWorkflow):
        return obj
    if inspect.isclass(obj) and issubclass(obj, BaseWorkflow):
        return obj()
    if callable(obj):
        name = getattr(obj, "__name__", "task")
        cls = type(
            name,
            (MultiRunMetricsWorkflow,),
            {
                "task": staticmethod(obj),
                "__module__": getattr(obj, "__module__", __name__),
                _LABEL: f"{name}()",
            },
        )
        return cls()
    raise TypeError(
        f"sweep_panel needs a task function or a workflow (class or instance); got {type(obj).__name__}"
    )


def task_label(wf: Any) -> str:
    """How errors name a workflow's task: ``name()`` for a wrapped function, else
    ``Class.task``."""
    return getattr(type(wf), _LABEL, f"{type(wf).__name__}.task")


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


def format_values(values: Sequence[Any]) -> str:
    """The inverse of :func:`parse_values` for an editable text field.

    >>> format_values([0.01, 0.1, 1.0])
    '0.01, 0.1, 1.0'
    >>> format_values(["a,b", "c"])
    "'a,b', 'c'"
    """
    from .._sweep import render_value

    return ", ".join(render_value(v) for v in values)
