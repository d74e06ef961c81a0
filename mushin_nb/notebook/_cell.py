"""The ``%%mushin_sweep`` cell's body: run it in the notebook's namespace, find the
task it defines (or the one ``--workflow`` / ``--task`` names), and put back the
names it bound when the cell is refused.

Examples
--------
>>> sorted(bound_names("import os\\ndef task(x):\\n    y = 1\\nz = 2"))
['os', 'task', 'z']
"""

from __future__ import annotations

import ast
import inspect
import symtable
from collections.abc import Mapping, MutableMapping
from typing import Any

from IPython.core.error import UsageError

from ._params import make_workflow

__all__ = ["bound_names", "is_workflow_class", "exec_body", "find_workflow", "snapshot", "restore"]

_MISSING = object()


def bound_names(code: str) -> set[str]:
    """The names a cell's code binds at the top level (def, class, import,
    assignment, for/with targets, ...), found without running it."""
    try:
        table = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError:
        return set()
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}


def snapshot(ns: Mapping[str, Any], names: set[str]) -> dict[str, Any]:
    """What ``names`` are bound to in ``ns`` now (a marker for unbound ones)."""
    return {n: ns.get(n, _MISSING) for n in names}


def restore(ns: MutableMapping[str, Any], before: Mapping[str, Any]) -> None:
    """Put back the names of a :func:`snapshot` (unbinding those that were unbound)."""
    for name, value in before.items():
        if value is _MISSING:
            ns.pop(name, None)
        else:
            ns[name] = value


def is_workflow_class(obj: Any) -> bool:
    """A subclass of ``BaseWorkflow`` (not ``BaseWorkflow`` itself)."""
    from .. import BaseWorkflow

    return inspect.isclass(obj) and issubclass(obj, BaseWorkflow) and obj is not BaseWorkflow


def exec_body(shell: Any, cell: str) -> list[str]:
    """Run the body in the user's namespace; return the names of the top-level
    functions and classes it defines."""
    code = shell.transform_cell(cell)
    tree = ast.parse(code)
    names = [
        n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    # cached like a cell, so inspect.getsource works (the task's hash for resume)
    filename = shell.compile.cache(code, shell.execution_count or 0, raw_code=cell)
    exec(compile(code, filename, "exec"), shell.user_global_ns, shell.user_ns)
    return names


def _named(ns: Mapping[str, Any], workflow: str | None, task: str | None) -> Any:
    from .. import BaseWorkflow

    if workflow:
        obj = ns.get(workflow)
        if obj is None:
            raise UsageError(f"--workflow {workflow}: no such name in the notebook's namespace.")
        if not (is_workflow_class(obj) or isinstance(obj, BaseWorkflow)):
            raise UsageError(
                f"--workflow {workflow}: it is a {type(obj).__name__}, not a workflow class "
                "(a subclass of MultiRunMetricsWorkflow); use --task for a plain function."
            )
        return make_workflow(obj)
    obj = ns.get(str(task))
    if obj is None:
        raise UsageError(f"--task {task}: no such name in the notebook's namespace.")
    if not callable(obj):
        raise UsageError(f"--task {task}: it is a {type(obj).__name__}, not a function or workflow.")
    return make_workflow(obj)


def find_workflow(ns: Mapping[str, Any], defined: list[str], workflow: str | None, task: str | None) -> Any:
    """The workflow the cell runs: ``--workflow`` / ``--task`` if given; else the
    function named ``task``, else the only function or workflow class the body
    (``defined``) defines."""
    if workflow or task:
        return _named(ns, workflow, task)
    cands = [n for n in defined if inspect.isfunction(ns.get(n)) or is_workflow_class(ns.get(n))]
    if "task" in cands and inspect.isfunction(ns.get("task")):
        return make_workflow(ns["task"])
    if len(cands) == 1:
        return make_workflow(ns[cands[0]])
    if not cands:
        raise UsageError(
            "The cell defines no task: define a function (e.g. `def task(lr: float) -> dict:` returning "
            "a dict of metrics) or a MultiRunMetricsWorkflow subclass in the cell, or pass "
            "--workflow NAME / --task NAME."
        )
    raise UsageError(
        f"The cell defines several functions or workflows ({', '.join(cands)}); say which one to "
        f"run with --task NAME (e.g. --task {cands[0]}), or name it `task`."
    )
