"""What a sweep is: parameters, their ordered values, and their Hydra overrides.

A sweep is described by a :class:`SweepSpec`: an ordered list of :class:`Param`,
each either *swept* (an ordered list of distinct values) or *fixed* (one value).
Values keep their Python type: they are rendered to Hydra's override grammar with
quoting (so ``"a,b"`` stays one string and ``"1"`` stays a string), and the
strings that Hydra's sweeper will put in each job's overrides are recorded, so a
job can find its grid cell by string lookup, without parsing anything.
"""

from __future__ import annotations

import math
import re
from collections import UserList
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._overrides import has_value, is_hydra_key, override_name, override_values, parse_override, unquote

__all__ = [
    "Param",
    "SweepSpec",
    "render_value",
    "build_spec",
    "sanitize_coord_values",
    "reserved_metric_names",
]

#: names a metric can never have: Dataset variables and coordinates made by mushin_nb
#: itself (the live ``status`` variable, ``to_xarray(include_working_subdirs_as_data_var=True)``
#: and the dimension of a run over ``target_job_dirs``)
BUILTIN_RESERVED = ("status", "working_subdir", "job_dir")


def _is_multirun(v: Any) -> bool:
    from hydra_zen import multirun

    return isinstance(v, multirun) or type(v).__name__ == "multirun" and isinstance(v, UserList)


def _is_hydra_list(v: Any) -> bool:
    from hydra_zen import hydra_list

    return isinstance(v, hydra_list) or type(v).__name__ == "hydra_list" and isinstance(v, UserList)


# --------------------------------------------------------------------------- rendering


def _quote_str(s: str) -> str:
    # OmegaConf level: `${` starts an interpolation; escape it (and the backslashes
    # before it) so the task receives the literal text.
    s = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", s)
    # Hydra quoted-string level: backslashes before a quote (or before the closing
    # quote) are halved by the parser; a quote needs one more.
    s = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", s)
    s = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, s)
    return "'" + s + "'"


def render_value(value: Any, *, name: str = "value") -> str:
    """Render one Python value in Hydra's override grammar, so that Hydra gives
    back exactly that value, with its type.

    Examples
    --------
    >>> render_value("a,b")
    "'a,b'"
    >>> render_value([1, "x", None, 2.5])
    "[1,'x',null,2.5]"
    >>> render_value(True)
    'true'
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))
    if isinstance(value, str):
        return _quote_str(value)
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        return render_value(value.item(), name=name)  # numpy scalar
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if not isinstance(k, str) or not re.match(r"^[A-Za-z_][\w\-]*$", k):
                raise ValueError(
                    f"{name}: dict key {k!r} cannot be written as a Hydra override; "
                    "use keys made of letters, digits, '_' and '-'."
                )
            items.append(f"{k}:{render_value(v, name=name)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple, UserList, range)):
        return "[" + ",".join(render_value(v, name=name) for v in value) + "]"
    raise TypeError(
        f"{name}: a value of type {type(value).__name__} ({value!r}) cannot be passed to a "
        "Hydra job; use int, float, bool, str, None, list, dict, multirun or hydra_list."
    )


# --------------------------------------------------------------------------- spec


@dataclass
class Param:
    """One task parameter of a sweep.

    ``values`` are the Python values in the order given; ``strings`` are the
    element strings that Hydra's sweeper writes in each job's override
    (``key=<string>``). A fixed parameter has one value and ``swept=False``.
    """

    name: str
    values: list[Any]
    strings: list[str]
    swept: bool
    prefix: str = ""  # "+" / "++" / "" as given to Hydra
    group: bool = False  # a config-group choice (values are option names)
    hydra_list: bool = False

    @property
    def value(self) -> Any:
        return self.values[0]

    def override(self) -> str:
        return f"{self.prefix}{self.name}=" + ",".join(self.strings)


@dataclass
class SweepSpec:
    """The parameters of a sweep, in the order Hydra receives them."""

    params: list[Param] = field(default_factory=list)
    hydra_overrides: list[str] = field(default_factory=list)

    @property
    def swept(self) -> list[Param]:
        return [p for p in self.params if p.swept]

    @property
    def fixed(self) -> list[Param]:
        return [p for p in self.params if not p.swept]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(p.values) for p in self.swept)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def task_overrides(self) -> list[str]:
        return [p.override() for p in self.params]

    def lookup(self) -> dict[str, dict[str, int]]:
        """``{name: {element string: index}}`` for the swept parameters."""
        return {p.name: {s: i for i, s in enumerate(p.strings)} for p in self.swept}

    def cell_params(self, index: Sequence[int]) -> dict[str, Any]:
        return {p.name: p.values[i] for p, i in zip(self.swept, index)}

    def fixed_values(self) -> dict[str, Any]:
        return {p.name: p.value for p in self.fixed}

    def to_json(self) -> dict[str, Any]:
        return {
            "params": [
                {
                    "name": p.name,
                    "values": p.values,
                    "strings": p.strings,
                    "swept": p.swept,
                    "prefix": p.prefix,
                    "group": p.group,
                    "hydra_list": p.hydra_list,
                }
                for p in self.params
            ],
            "hydra_overrides": self.hydra_overrides,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SweepSpec:
        return cls(
            params=[Param(**p) for p in d["params"]],
            hydra_overrides=list(d.get("hydra_overrides", [])),
        )


def _check_unique(name: str, values: Sequence[Any]) -> None:
    coords = sanitize_coord_values(list(values))
    seen: dict[Any, int] = {}
    for i, c in enumerate(coords):
        key = ("nan",) if isinstance(c, float) and math.isnan(c) else c
        if key in seen:
            raise ValueError(
                f"The swept parameter {name!r} has the value {values[i]!r} more than once "
                f"(positions {seen[key]} and {i}); each value of a sweep must be distinct, "
                "because it labels one coordinate of the Dataset. Remove the repeat."
            )
        seen[key] = i


def sanitize_coord_values(values: list[Any]) -> list[Any]:
    """Values of a swept parameter -> coordinate values that xarray and NetCDF hold.

    Homogeneous ints, floats (ints mixed with floats become floats), bools and
    strings are kept; lists, dicts, None and mixtures of types become their
    ``str`` form (as rai mushin does for lists), with strings quoted in a mixture.

    Examples
    --------
    >>> sanitize_coord_values([1, 2.5])
    [1.0, 2.5]
    >>> sanitize_coord_values([1, "1", None, [0, 1]])
    ['1', "'1'", 'None', '[0, 1]']
    """
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int):
            kinds.add("int")
        elif isinstance(v, float):
            kinds.add("float")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            kinds.add("other")
    if kinds <= {"int"} or kinds == {"bool"} or kinds == {"str"}:
        return list(values)
    if kinds <= {"int", "float"}:
        return [float(v) for v in values]
    # a mixture: text labels, strings quoted so that 1 and "1" stay distinct
    return [repr(v) if isinstance(v, str) else str(v) for v in values]


def _group_names() -> set[str]:
    from hydra.core.config_store import ConfigStore

    names: set[str] = set()

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                full = f"{prefix}{k}"
                names.add(full)
                walk(v, full + "/")

    walk(ConfigStore.instance().repo, "")
    return names


def _to_python(value: Any) -> Any:
    """numpy scalars and arrays, also inside lists, tuples and dicts -> Python values.

    A sweep value keeps one type from the call to the Dataset and back: the
    manifest is JSON, so ``np.int64(1)`` would be a string coordinate live (a mixture
    of types) and an int after reload; as ``1`` it is an int in both.
    """
    import sys

    np = sys.modules.get("numpy")  # no numpy value can exist before numpy is imported
    if np is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {_to_python(k): _to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_python(v) for v in value)
    if isinstance(value, UserList):
        return type(value)([_to_python(v) for v in value])
    return value


def reserved_metric_names(spec: SweepSpec, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a task's metric cannot have in this sweep: the parameters (swept
    ones are the Dataset's coordinates, fixed ones its attributes or, with
    ``non_multirun_params_as_singleton_dims=True``, coordinates) and the names
    mushin_nb gives its own variables (``status``, ``working_subdir``, ``job_dir``), and
    ``extra`` (e.g. an upstream sweep's parameters, coordinates along ``job_dir``).

    ``JobRunner(reserved=...)`` fails the first job that returns such a metric.

    Examples
    --------
    >>> from hydra_zen import multirun
    >>> spec = build_spec(base_cfg=None, overrides=None,
    ...                   workflow_overrides={"lr": multirun([0.1, 1.0]), "seed": 0})
    >>> sorted(reserved_metric_names(spec))
    ['job_dir', 'lr', 'seed', 'status', 'working_subdir']
    """
    names = {p.name for p in spec.params} | set(BUILTIN_RESERVED) | set(extra)
    return frozenset(names)


class _SpecBuilder:
    """Collects the parameters of a sweep, each once, in the order given."""

    def __init__(self, base_cfg: Any, raw_string_keys: Iterable[str]) -> None:
        self.spec = SweepSpec()
        self.base_cfg = base_cfg
        self.names: set[str] = set()
        self.groups: set[str] | None = None
        self.raw_string_keys = set(raw_string_keys)

    def add(self, p: Param) -> None:
        if p.name in self.names:
            raise ValueError(
                f"The parameter {p.name!r} is given twice (in `overrides` and as a keyword, "
                "or twice in `overrides`); give it once."
            )
        if p.swept:
            _check_unique(p.name, p.values)
        self.names.add(p.name)
        self.spec.params.append(p)

    def from_override(self, text: str, *, always_swept: bool = False) -> None:
        """One override in Hydra's grammar: ``hydra.*`` settings and deletions pass
        through to Hydra; task-level keys and config-group choices become parameters."""
        o = parse_override(text)
        key = o.key_or_group
        if is_hydra_key(key) or o.is_delete():
            self.spec.hydra_overrides.append(text)
            return
        if self.groups is None:
            self.groups = _group_names()
        is_group = o.package is None and key in self.groups
        prefix = {"ADD": "+", "FORCE_ADD": "++"}.get(o.type.name, "")
        name = override_name(o)
        if o.is_sweep_override():
            values = override_values(o)  # an interval sweep: OverrideError, naming the fix
            self.add(Param(name, values, list(o.sweep_string_iterator()), True, prefix, is_group))
            return
        v = unquote(o.value())
        elem = o.get_value_element_as_str()
        hl = isinstance(v, list) and not always_swept
        self.add(Param(name, [v], [elem], always_swept, prefix, is_group, hl))

    def from_keyword(self, key: str, value: Any) -> None:
        """One keyword of ``run()``: ``multirun`` swept, ``hydra_list`` one list, other
        values fixed with their own type (strings never parsed, but for raw keys)."""
        from hydra_zen import hydra_list as _hl
        from hydra_zen import multirun as _mr

        prefix = "" if has_value(self.base_cfg, key) else "+"
        if isinstance(value, _mr) or _is_multirun(value):
            values = [_to_python(v) for v in value]  # np.float64(0.1) -> 0.1, live and reloaded alike
            if not values:
                raise ValueError(f"{key}=multirun([]) has no values; give at least one.")
            strings = [render_value(v, name=key) for v in values]
            # the values as Hydra will hand them to the task (strings stay strings)
            values = [list(v) if isinstance(v, (tuple, UserList, range)) else v for v in values]
            self.add(Param(key, values, strings, True, prefix))
            return
        if isinstance(value, _hl) or _is_hydra_list(value):
            items = [_to_python(v) for v in value]
            self.add(Param(key, [items], [render_value(items, name=key)], False, prefix, hydra_list=True))
            return
        value = _to_python(value)  # a numpy scalar is its Python value (np.int64(3) -> 3)
        if isinstance(value, str) and key in self.raw_string_keys:
            self.from_override(f"{prefix}{key}={value}", always_swept=True)
        elif value is None or isinstance(value, (bool, int, float, str, dict)):
            self.add(Param(key, [value], [render_value(value, name=key)], False, prefix))
        else:
            raise TypeError(
                f"The keyword argument {key}={value!r} has type {type(value).__name__}, which "
                "cannot be a Hydra override. Use int, float, bool, str, dict, None, "
                f"multirun([...]) to sweep it, or hydra_list([...]) for one list value "
                f"(e.g. {key}=multirun({value!r}) if it is a list of values to sweep)."
            )


def build_spec(
    *,
    base_cfg: Any,
    overrides: Iterable[str] | None,
    workflow_overrides: Mapping[str, Any],
    raw_string_keys: Iterable[str] = (),
) -> SweepSpec:
    """Turn ``run(...)``'s ``overrides`` and keyword values into a :class:`SweepSpec`.

    - ``multirun(values)``: swept, each value one job, quoted so it keeps its type;
    - ``hydra_list(values)``: one list value;
    - anything else allowed (int, float, bool, str, dict, None): one fixed value of
      its own type; strings are *not* parsed as Hydra sweeps, except for keys in
      ``raw_string_keys`` (``RobustnessCurve``'s ``epsilon``);
    - ``overrides``: Hydra's grammar; ``hydra.*`` settings and config-group
      choices pass through to Hydra, task-level ones become parameters.

    Examples
    --------
    >>> from hydra_zen import multirun
    >>> spec = build_spec(base_cfg=None, overrides=["seed=0,1"], workflow_overrides={"lr": multirun([0.1, 1])})
    >>> [(p.name, p.values, p.swept) for p in spec.params], spec.shape
    ([('seed', [0, 1], True), ('lr', [0.1, 1], True)], (2, 2))
    """
    b = _SpecBuilder(base_cfg, raw_string_keys)
    for text in list(overrides or []):
        if not isinstance(text, str):
            raise TypeError(f"`overrides` must be a list of strings; got {text!r}")
        b.from_override(text)
    for key, value in workflow_overrides.items():
        b.from_keyword(key, value)
    return b.spec


def parse_job_overrides(
    job_overrides: Sequence[str], lookup: Mapping[str, Mapping[str, int]]
) -> tuple[int, ...] | None:
    """A job's task overrides (``['+lr=0.1', ...]``) -> its grid index, by string
    lookup; ``None`` if a string is not one of the sweep's element strings."""
    found: dict[str, int] = {}
    for o in job_overrides:
        k, _, v = o.partition("=")
        k = k.lstrip("+~")
        table = lookup.get(k)
        if table is not None:
            i = table.get(v)
            if i is None:
                return None
            found[k] = i
    if len(found) != len(lookup):
        return None
    return tuple(found[k] for k in lookup)
