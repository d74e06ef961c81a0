"""Metric values and names: what a job may return, and what it must return instead.

A task returns a dict of metrics; :func:`convert_metrics` turns it into JSON scalars
and numpy arrays, or raises an error naming the metric, the job's parameters and
what to return instead. Nothing is stored that cannot be read back faithfully.

Examples
--------
>>> import numpy as np
>>> convert_metrics({"acc": np.float64(0.9), "curve": [1, 2]}, reserved=["lr"])
{'acc': 0.9, 'curve': array([1, 2])}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MetricNameError",
    "MetricValueError",
    "check_stored_metrics",
    "convert_metrics",
    "to_numpy_or_scalar",
]

# Values mushin_nb refuses, with what to return instead. Complex numbers, dates and
# times, bytes and Python objects have no faithful form in the result files' JSON
# (and complex none in NetCDF without non-standard extensions), so mushin_nb does
# not guess one: the job fails, saying what to return. (docs/workflows.md, "Values")
_KIND_FIXES: dict[str, tuple[str, str]] = {
    "c": ("a complex number", "return z.real and z.imag as two metrics, or abs(z)"),
    "M": (
        "a date/time",
        "return str(t), or a number: t.astype('datetime64[s]').astype(float) (seconds since 1970)",
    ),
    "m": ("a time span", "return a number: t / np.timedelta64(1, 's') (seconds)"),
    "S": ("bytes", "decode it to str (b.decode()), or return np.frombuffer(b, np.uint8)"),
    "V": ("a raw or structured record", "return each field as its own metric"),
    "O": ("a Python object", "return numbers, strings, or arrays/tensors of them"),
}
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


class MetricValueError(TypeError):
    """A metric value that mushin_nb cannot store faithfully (the job's failure).

    Examples
    --------
    >>> import datetime
    >>> try:
    ...     to_numpy_or_scalar(datetime.date(2024, 1, 2), name="day")
    ... except MetricValueError as e:
    ...     print(str(e)[:40])
    The metric 'day' is a date/time (datetim
    """


class MetricNameError(ValueError):
    """A metric name that collides with a parameter, a coordinate, ``status`` or
    another metric (the job's failure).

    Examples
    --------
    >>> try:
    ...     convert_metrics({"lr": 0.1}, reserved=["lr"], swept=["lr"], where="lr=0.1")
    ... except MetricNameError as e:
    ...     print(e)
    The metric 'lr' returned by the job with lr=0.1 has the name of the swept parameter 'lr' (a coordinate of the Dataset), so the Dataset could not hold both. Rename the metric (e.g. 'lr_value') in the dict the task returns.
    """


def _who(name: str, where: str) -> str:
    return f"The metric {name!r}" + (f" returned by the job with {where}" if where else "")


def _refuse(name: str, where: str, value: Any, what: str, fix: str) -> MetricValueError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return MetricValueError(
        f"{_who(name, where)} is {what} ({type(value).__module__}.{type(value).__qualname__}: "
        f"{shown}), which mushin_nb does not store (it cannot be kept faithfully): {fix}."
    )


_ARRAY_FIXES: dict[str, str] = {
    "c": "return a.real and a.imag as two metrics, or np.abs(a)",
    "M": "return a.astype(str), or numbers: a.astype('datetime64[s]').astype(float) (seconds since 1970)",
    "m": "return numbers: a / np.timedelta64(1, 's') (seconds)",
    "S": "decode it to str: a.astype(str)",
    "V": "return each field as its own metric",
    "O": "return numbers, strings, or arrays/tensors of them",
}


def _check_dtype(value: Any, dtype: Any, *, name: str, where: str) -> None:
    """Refuse a value whose numpy dtype has no faithful stored form."""
    kind = dtype.kind
    is_array = getattr(value, "ndim", 0) != 0 or isinstance(value, (list, tuple))
    if kind in _KIND_FIXES:
        what, fix = _KIND_FIXES[kind]
        if kind == "O" and isinstance(value, Mapping):
            what, fix = "a dict", "return its entries as metrics of their own (dict(a=d['a'], b=d['b']))"
        elif kind == "O" and is_array:
            what, fix = "a list/array holding Python objects (None, dicts, mixed types...)", _ARRAY_FIXES["O"]
        elif is_array:
            what, fix = f"an array of dtype {dtype}", _ARRAY_FIXES[kind]
        raise _refuse(name, where, value, what, fix)
    if kind == "f" and dtype.itemsize > 8:
        raise _refuse(name, where, value, f"of dtype {dtype} (wider than float64)", "return x.astype(float)")
    if kind not in "biufU":  # pragma: no cover - every numpy kind is handled above
        raise _refuse(name, where, value, f"of dtype {dtype}", "return numbers or strings")


def _check_text(text: str, *, name: str, where: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MetricValueError(
            f"{_who(name, where)}: its {what} {text!r} holds {text[e.start : e.end]!r}, which is not "
            "valid Unicode text (a lone surrogate) and cannot be written to a UTF-8 file; remove it, "
            "or return s.encode('utf-8', 'surrogatepass').hex()."
        ) from None


def _leaves_all_str(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, (list, tuple)):
        return all(_leaves_all_str(v) for v in value)
    return False


def to_numpy_or_scalar(value: Any, *, name: str, where: str = "") -> Any:
    """A metric value -> a JSON scalar (bool/int/float/str/None) or a numpy array.

    Tensors (anything with ``detach``/``cpu``/``numpy``) become numpy; a 1-element
    list is unwrapped (rai mushin does the same); numpy scalars become Python ones.

    A value that cannot be stored faithfully raises :class:`MetricValueError`
    (a ``TypeError``) naming the metric, its type, ``where`` (the job's
    parameters) and what to return instead: complex numbers, dates and times,
    bytes, Python objects (dicts, sets, None inside lists...), ints beyond 64
    bits, floats wider than float64, lists mixing strings with other values, and
    arrays of such dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> to_numpy_or_scalar(np.float32(0.5), name="acc")
    0.5
    >>> to_numpy_or_scalar(1 + 2j, name="z", where="x=1")
    Traceback (most recent call last):
    ...
    mushin_nb._store.MetricValueError: The metric 'z' returned by the job with x=1 is a complex number (builtins.complex: (1+2j)), which mushin_nb does not store (it cannot be kept faithfully): return z.real and z.imag as two metrics, or abs(z).
    """
    import numpy as np

    t = type(value)
    shown = value  # what the task returned, for messages (a tensor, not its numpy copy)
    if value is None or t is bool or t is float:
        return value
    if t is int:
        if not _INT_MIN <= value <= _UINT_MAX:
            raise _refuse(
                name, where, value, "an int beyond 64 bits", "return float(n), or str(n) to keep every digit"
            )
        return value
    if t is str:
        _check_text(value, name=name, where=where, what="value")
        return value
    _refuse_python_kinds(value, name=name, where=where)
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = _tensor_to_numpy(value, name=name, where=where)
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], (list, tuple)):
        return to_numpy_or_scalar(value[0], name=name, where=where)
    if isinstance(value, np.generic):
        _check_dtype(value, value.dtype, name=name, where=where)
        return _checked_item(value, name=name, where=where)
    return _to_array(value, shown, name=name, where=where)


def _refuse_python_kinds(value: Any, *, name: str, where: str) -> None:
    """Refuse bytes, dates, times and time spans (Python's own types)."""
    import datetime as _dt

    if isinstance(value, (bytes, bytearray, memoryview)):
        raise _refuse(
            name, where, value, "bytes", "decode it to str (b.decode()), or return np.frombuffer(b, np.uint8)"
        )
    if isinstance(value, (_dt.date, _dt.time)):
        raise _refuse(
            name,
            where,
            value,
            "a date/time",
            "return str(t) or t.isoformat(), or a number such as t.timestamp()",
        )
    if isinstance(value, _dt.timedelta):
        raise _refuse(name, where, value, "a time span", "return a number: t.total_seconds()")


def _tensor_to_numpy(value: Any, *, name: str, where: str) -> Any:
    try:
        return value.detach().cpu().numpy()
    except Exception as e:  # e.g. bfloat16 tensors, which numpy has no dtype for
        raise MetricValueError(
            f"{_who(name, where)} is a {type(value).__name__} that cannot be turned into a numpy array "
            f"({type(e).__name__}: {e}); return t.float() (or t.double()) instead."
        ) from None


def _checked_item(value: Any, *, name: str, where: str) -> Any:
    """A numpy scalar or 0-d array as a Python value (text checked for lone surrogates)."""
    out = value.item()
    if isinstance(out, str):
        _check_text(out, name=name, where=where, what="value")
    return out


def _to_array(value: Any, shown: Any, *, name: str, where: str) -> Any:
    """A list, tuple or array-like as a checked numpy array (a 0-d one as a scalar)."""
    import numpy as np

    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists
        raise MetricValueError(
            f"{_who(name, where)} ({type(shown).__name__}) cannot be turned into an array ({e}); return a "
            "rectangular list/array (pad it), or one metric per part."
        ) from None
    if arr.dtype == object and isinstance(value, (int, list, tuple)) and _all_big_ints(value):
        raise _refuse(
            name,
            where,
            value,
            "ints beyond 64 bits",
            "return float values, or str values to keep every digit",
        )
    _check_dtype(shown, arr.dtype, name=name, where=where)
    if arr.dtype.kind == "U" and isinstance(value, (list, tuple)) and not _leaves_all_str(value):
        raise _refuse(
            name,
            where,
            value,
            "a list mixing strings with other values",
            "numpy would turn every value into a string; return the strings and the numbers as "
            "separate metrics, or str() each value yourself",
        )
    if arr.ndim == 0:
        return _checked_item(arr, name=name, where=where)
    return arr


def _all_big_ints(value: Any) -> bool:
    """True if ``value`` (nested lists) holds only ints, some beyond 64 bits."""
    flat: list[Any] = []

    def walk(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            return all(walk(x) for x in v)
        if type(v) is int:
            flat.append(v)
            return True
        return False

    return walk(value) and any(not _INT_MIN <= v <= _UINT_MAX for v in flat)


#: what mushin_nb calls its own Dataset variables and dimensions (never a metric)
_BUILTIN_NAMES = {
    "status": "the `status` variable of the live Dataset (run.dataset)",
    "working_subdir": "the variable of to_xarray(include_working_subdirs_as_data_var=True)",
    "job_dir": "the dimension of a run over target_job_dirs",
}


def convert_metrics(
    out: Mapping[Any, Any],
    *,
    reserved: Iterable[str] = (),
    swept: Iterable[str] = (),
    where: str = "",
) -> dict[str, Any]:
    """A task's returned dict -> ``{name: JSON scalar or numpy array}``, checked.

    Raises :class:`MetricValueError` for a value that cannot be stored faithfully
    and :class:`MetricNameError` for a name the Dataset cannot hold: one of
    ``reserved`` (the sweep's parameters and ``status``, ``working_subdir``,
    ``job_dir``; ``swept`` tells which of them are coordinates), the coordinate
    ``<metric>_dim<n>`` of an array metric, or the same text as another key
    (``1`` and ``"1"``). ``where`` names the job's parameters in the message.

    Examples
    --------
    >>> convert_metrics({"acc": 0.5, 1: [2.0]})
    {'acc': 0.5, '1': 2.0}
    >>> convert_metrics({"status": 1})
    Traceback (most recent call last):
    ...
    mushin_nb._store.MetricNameError: The metric 'status' returned by the job has the name of the `status` variable ...
    """
    reserved = frozenset(reserved)
    swept = frozenset(swept)
    metrics: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    job = f"the job with {where}" if where else "the job"
    for k, v in out.items():
        name = k if type(k) is str else str(k)
        _check_text(name, name=name, where=where, what="name")
        if name in keys:
            raise MetricNameError(
                f"The metric keys {keys[name]!r} ({type(keys[name]).__name__}) and {k!r} "
                f"({type(k).__name__}) returned by {job} are both {name!r} as text (metric names "
                "are strings), so one would overwrite the other. Rename one of them."
            )
        keys[name] = k
        metrics[name] = to_numpy_or_scalar(v, name=name, where=where)

    def clash(name: str, other: str, what: str) -> MetricNameError:
        return MetricNameError(
            f"The metric {name!r} returned by {job} has the name of {what}, so the Dataset "
            f"could not hold both. Rename the metric (e.g. {name + '_value'!r}) in the dict the task returns."
        )

    for name in metrics:
        if name in _BUILTIN_NAMES:
            raise clash(name, name, _BUILTIN_NAMES[name])
        if name in reserved:
            kind = "swept parameter" if name in swept else "parameter"
            where_ds = "a coordinate" if name in swept else "an attribute or coordinate"
            raise clash(name, name, f"the {kind} {name!r} ({where_ds} of the Dataset)")
    for name, v in metrics.items():
        for n in range(getattr(v, "ndim", 0)):
            dim = f"{name}_dim{n}"
            if dim in metrics:
                raise clash(dim, dim, f"the dimension {dim!r} of the array metric {name!r}")
            if dim in reserved or dim in _BUILTIN_NAMES:
                raise MetricNameError(
                    f"The array metric {name!r} returned by {job} has a dimension named {dim!r}, "
                    f"which is also the name of a parameter of the sweep. Rename the metric in the "
                    "dict the task returns."
                )
    return metrics


def check_stored_metrics(metrics: Mapping[Any, Any]) -> None:
    """Refuse, before anything is written, converted metrics that have no faithful
    stored form: a name that is not a ``str`` (:class:`MetricNameError`) or a value
    :func:`to_numpy_or_scalar` refuses (:class:`MetricValueError`).

    Examples
    --------
    >>> import numpy as np
    >>> check_stored_metrics({"acc": 0.5, "curve": np.zeros(2)})
    >>> check_stored_metrics({"z": np.array([1j])})
    Traceback (most recent call last):
    ...
    mushin_nb._store.MetricValueError: The metric 'z' is an array of dtype complex128 ...
    """
    import numpy as np

    for k, v in metrics.items():
        if type(k) is not str:
            raise MetricNameError(f"metric names must be str; got {k!r} ({type(k).__name__})")
        if isinstance(v, np.ndarray):
            _check_dtype(v, v.dtype, name=k, where="")
        else:
            to_numpy_or_scalar(v, name=k)  # raises MetricValueError for what has no stored form
