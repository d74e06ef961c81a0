"""Adaptive sweeps: one or two numeric parameters sampled where the response bends.

A sweep value ``adaptive_range(low, high, ...)`` (instead of ``multirun([...])``) makes
``run``/``start`` choose that parameter's values as it goes, with the learners of the
`adaptive <https://adaptive.readthedocs.io>`_ package (``Learner1D`` for one parameter,
``Learner2D`` for two): one learner per combination of the other swept values (one curve
per model, say), balanced by a ``BalancingLearner`` that asks the learner whose curve
gains most.

It runs in rounds. Each round asks the learners for ``batch_size`` new points and runs
them as one sweep of the workflow into the same directory, as ``resume=True`` does: the
grid grows by the new values, every cell that has a result is reused, so each point is a
job with its directory and stored result like any other, through any launcher. Then the
learners are told what the jobs returned, and the next round starts, until a goal is
reached (``loss_goal``, ``npoints_goal``, ``duration_goal``) or the run is cancelled.

A new point runs for every combination of the other swept values, so the Dataset of a
one-parameter adaptive sweep is a full grid, its coordinate the sampled values in sorted
order. Two adaptive parameters give a grid over both coordinates in which only the
sampled pairs ran (the other cells: NaN, ``cancelled``).

This module holds the settings (:func:`adaptive_range`) and the learners
(:class:`Sampler`); :mod:`mushin_nb._adaptive_run` runs the rounds.

Examples
--------
>>> r = adaptive_range(0.0, 1.0, loss_goal=0.02, batch_size=4)
>>> r.low, r.high, r.loss_goal, r.batch_size
(0.0, 1.0, 0.02, 4)
>>> adaptive_params({"epsilon": r, "seed": 0}) == {"epsilon": r}
True
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ._reload import canonical

if TYPE_CHECKING:
    from ._store import JobResult
    from ._sweep import SweepSpec

__all__ = [
    "AdaptiveRange",
    "adaptive_range",
    "adaptive_params",
    "adaptive_override",
    "Sampler",
    "settings_of",
    "LOSSES",
]

LOSSES = {
    1: ("default", "uniform", "curvature", "abs_min_log"),
    2: ("default", "uniform", "min_surface"),
}
"""The loss names ``adaptive_range(loss=...)`` takes, per number of adaptive parameters:
the loss functions of ``adaptive.Learner1D`` (one) and ``adaptive.Learner2D`` (two)."""

DEFAULT_NPOINTS = 20
DEFAULT_BATCH = 4


@dataclass(frozen=True)
class AdaptiveRange:
    """The value of a parameter sampled adaptively in ``[low, high]``, with the rules of
    its sweep (see :func:`adaptive_range`)."""

    low: float
    high: float
    metric: str | None = None
    loss_goal: float | None = None
    npoints_goal: int | None = None
    duration_goal: float | None = None
    batch_size: int | None = None
    loss: str | Callable[..., Any] | None = None

    def __repr__(self) -> str:
        given = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)[2:] if _given(self, f.name)]
        return f"adaptive_range({', '.join([repr(self.low), repr(self.high), *given])})"


def _given(r: AdaptiveRange, name: str) -> bool:
    return getattr(r, name) != (next(f for f in fields(r) if f.name == name).default)


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"adaptive_range: {name}={v!r}; give a finite number")
    return float(v)


def adaptive_range(
    low: float,
    high: float,
    *,
    metric: str | None = None,
    loss_goal: float | None = None,
    npoints_goal: int | None = None,
    duration_goal: float | _dt.timedelta | None = None,
    batch_size: int | None = None,
    loss: str | Callable[..., Any] | None = None,
) -> AdaptiveRange:
    """Sample this parameter adaptively in ``[low, high]``: the value of a keyword of
    ``run``/``start`` (``wf.run(epsilon=adaptive_range(0.0, 1.0))``), in place of
    ``multirun([...])``. One or two parameters of a sweep can be adaptive; the others
    are swept over their values as usual, one adaptive curve per combination of them.
    Without a goal the sweep stops at 20 points; with several it stops at the first
    reached. Settings given on both parameters of a two-parameter sweep must agree.

    Parameters
    ----------
    low, high : float
        The bounds; both are sampled.
    metric : str, optional
        The metric the learners follow (one number per job). Needed when the task
        returns more than one number.
    loss_goal : float, optional
        Stop once the learners' loss (``adaptive``'s: the largest of the learners') is
        at most this.
    npoints_goal : int, optional
        Stop at this many values of the parameter (pairs, for two parameters); every
        value runs once per combination of the other swept values.
    duration_goal : float (seconds) or timedelta, optional
        Start no new round after this time (the running round finishes).
    batch_size : int, optional
        New points per round, each round one sweep through the launcher (default: the
        larger of 4 and ``jobs``).
    loss : str or callable, optional
        ``adaptive``'s loss: ``"curvature"`` (the default for one parameter: it samples
        where the curve bends, which keeps the largest interpolation error small),
        ``"default"`` (``adaptive``'s own default), ``"uniform"`` or ``"abs_min_log"`` for
        one parameter (``Learner1D``); ``"default"`` (the default for two),
        ``"uniform"`` or ``"min_surface"`` for two (``Learner2D``); or a loss function of
        that learner.

    Examples
    --------
    >>> import math, tempfile
    >>> from mushin_nb import MultiRunMetricsWorkflow, adaptive_range
    >>> class Step(MultiRunMetricsWorkflow):
    ...     @staticmethod
    ...     def task(x: float) -> dict:
    ...         return dict(y=1 / (1 + math.exp(-(x - 0.3) / 0.02)))
    >>> wf = Step()
    >>> wf.run(x=adaptive_range(0.0, 1.0, npoints_goal=12), working_dir=tempfile.mkdtemp(),
    ...        progress=False)
    >>> xs = wf.to_xarray()["x"].values
    >>> len(xs), bool((xs[1:] > xs[:-1]).all())  # sampled values, sorted
    (12, True)
    >>> int(((xs > 0.2) & (xs < 0.4)).sum()) >= 4  # a fifth of the range, a third of the points
    True
    """
    lo, hi = _number("low", low), _number("high", high)
    if not lo < hi:
        raise ValueError(f"adaptive_range({low!r}, {high!r}): low must be smaller than high")
    if metric is not None and not isinstance(metric, str):
        raise TypeError(f"adaptive_range: metric={metric!r}; give the name of one metric of the task")
    if loss_goal is not None and not _number("loss_goal", loss_goal) > 0:
        raise ValueError(f"adaptive_range: loss_goal={loss_goal!r}; give a number > 0")
    if npoints_goal is not None and (
        isinstance(npoints_goal, bool) or not isinstance(npoints_goal, int) or npoints_goal < 2
    ):
        raise ValueError(f"adaptive_range: npoints_goal={npoints_goal!r}; give a whole number >= 2")
    if isinstance(duration_goal, _dt.timedelta):
        duration_goal = duration_goal.total_seconds()
    if duration_goal is not None and not _number("duration_goal", duration_goal) > 0:
        raise ValueError(f"adaptive_range: duration_goal={duration_goal!r}; give seconds > 0 or a timedelta")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"adaptive_range: batch_size={batch_size!r}; give a whole number >= 1")
    if loss is None:
        pass
    elif isinstance(loss, str):
        known = sorted(set(LOSSES[1]) | set(LOSSES[2]))
        if loss not in known:
            raise ValueError(
                f"adaptive_range: loss={loss!r} is not a loss it knows; choose one of "
                f"{', '.join(map(repr, known))} or give a loss function of adaptive's learner"
            )
    elif not callable(loss):
        raise TypeError(f"adaptive_range: loss={loss!r}; give a loss name or a loss function")
    return AdaptiveRange(
        lo,
        hi,
        metric=metric,
        loss_goal=None if loss_goal is None else float(loss_goal),
        npoints_goal=npoints_goal,
        duration_goal=None if duration_goal is None else float(duration_goal),
        batch_size=batch_size,
        loss=loss,
    )


def adaptive_params(overrides: Mapping[str, Any]) -> dict[str, AdaptiveRange]:
    """The keyword values of a ``run``/``start`` call that are :func:`adaptive_range`
    values, by name (empty for a fixed sweep)."""
    return {k: v for k, v in overrides.items() if isinstance(v, AdaptiveRange)}


def adaptive_override(text: str) -> tuple[str, AdaptiveRange] | None:
    """``"name=adaptive(low, high, key=value, ...)"`` (the magic's and the panel's
    spelling of :func:`adaptive_range`) -> ``(name, AdaptiveRange)``; None for any other
    override. The arguments are numbers, strings or None, as for ``adaptive_range``.

    Examples
    --------
    >>> adaptive_override("epsilon=adaptive(0, 1, npoints_goal=12)")
    ('epsilon', adaptive_range(0.0, 1.0, npoints_goal=12))
    >>> adaptive_override("lr=0.1,1.0") is None
    True
    >>> adaptive_override("epsilon=adaptive(0)")
    Traceback (most recent call last):
    ...
    ValueError: epsilon=adaptive(0): give the bounds and, if you like, settings of adaptive_range: e.g. epsilon=adaptive(0.0, 1.0, npoints_goal=20)
    """
    import ast
    import re

    m = re.fullmatch(r"\s*\+{0,2}([A-Za-z_][\w.]*)\s*=\s*adaptive\((.*)\)\s*", text, re.S)
    if m is None:
        return None
    name, inner = m.group(1), m.group(2)
    usage = (
        f"{text.strip()}: give the bounds and, if you like, settings of adaptive_range: "
        f"e.g. {name}=adaptive(0.0, 1.0, npoints_goal=20)"
    )
    try:
        call = ast.parse(f"f({inner})", mode="eval").body
        assert isinstance(call, ast.Call)
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
    except (SyntaxError, ValueError, AssertionError):
        raise ValueError(usage) from None
    if len(args) != 2 or len(kwargs) != len(call.keywords):
        raise ValueError(usage)
    try:
        return name, adaptive_range(*args, **kwargs)
    except TypeError as e:  # an unknown setting
        raise ValueError(f"{text.strip()}: {e}; {usage.split(': ', 1)[1]}") from None


def split_adaptive(tokens: Sequence[str]) -> tuple[dict[str, AdaptiveRange], list[str]]:
    """Override strings -> the ``name=adaptive(...)`` ones as :func:`adaptive_range`
    values by name, and the others (for Hydra's grammar), in order.

    Examples
    --------
    >>> split_adaptive(["epsilon=adaptive(0, 1)", "seed=0,1"])
    ({'epsilon': adaptive_range(0.0, 1.0)}, ['seed=0,1'])
    """
    found: dict[str, AdaptiveRange] = {}
    rest: list[str] = []
    for tok in tokens:
        got = adaptive_override(tok)
        if got is None:
            rest.append(tok)
        elif got[0] in found:
            raise ValueError(f"{got[0]!r} is given twice; give it once.")
        else:
            found[got[0]] = got[1]
    return found, rest


def settings_of(ranges: Mapping[str, AdaptiveRange], *, jobs: int | None) -> AdaptiveRange:
    """The one set of rules of an adaptive sweep: the settings given on its adaptive
    parameters (the same on both, or on one of two), with the defaults filled in."""
    names = list(ranges)
    if len(names) > 2:
        raise ValueError(
            f"{', '.join(names)} are all adaptive_range(...) values; adaptive sampling covers one "
            "or two parameters: sweep the others with multirun([...])."
        )
    out: dict[str, Any] = {}
    for f in fields(AdaptiveRange)[2:]:
        given = {n: getattr(r, f.name) for n, r in ranges.items() if _given(r, f.name)}
        if len({repr(v) for v in given.values()}) > 1:
            told = " and ".join(f"{n}=adaptive_range(..., {f.name}={v!r})" for n, v in given.items())
            raise ValueError(f"{told} disagree; give {f.name} once (on either parameter).")
        out[f.name] = next(iter(given.values()), f.default)
    if out["loss"] is None:
        out["loss"] = "curvature" if len(names) == 1 else "default"
    loss = out["loss"]
    if isinstance(loss, str) and loss not in LOSSES[len(names)]:
        raise ValueError(
            f"loss={loss!r} is a loss for {'two parameters' if len(names) == 1 else 'one parameter'}; "
            f"with {len(names)} adaptive parameter(s) choose one of {', '.join(map(repr, LOSSES[len(names)]))}."
        )
    if out["loss_goal"] is None and out["npoints_goal"] is None and out["duration_goal"] is None:
        out["npoints_goal"] = DEFAULT_NPOINTS
    if out["batch_size"] is None:
        out["batch_size"] = max(DEFAULT_BATCH, jobs or 0)
    first = next(iter(ranges.values()))
    return AdaptiveRange(first.low, first.high, **out)


def _loss_function(loss: str | Callable[..., Any] | None, ndim: int) -> Any:
    if callable(loss):
        return loss
    loss = loss or ("curvature" if ndim == 1 else "default")
    if ndim == 1:
        from adaptive.learner import learner1D as m

        if loss == "curvature":
            return m.curvature_loss_function()
        return {"default": m.default_loss, "uniform": m.uniform_loss, "abs_min_log": m.abs_min_log_loss}[loss]
    from adaptive.learner import learner2D as m2

    return {
        "default": m2.default_loss,
        "uniform": m2.uniform_loss,
        "min_surface": m2.minimize_triangle_surface_loss,
    }[loss]


def _never_called(*_: Any) -> Any:  # the learners are asked and told, never run
    raise RuntimeError("mushin_nb runs the points as Hydra jobs")


class Sampler:
    """The learners of an adaptive sweep and the points they asked for.

    One ``adaptive`` learner per combination of the other swept values (``combos``:
    their values, in the order of ``others``), all under one ``BalancingLearner``. A
    point runs for every combination, so every learner is told every point.

    Examples
    --------
    >>> from hydra_zen import multirun
    >>> from mushin_nb._store import JobResult
    >>> from mushin_nb._sweep import build_spec
    >>> s = Sampler({"x": adaptive_range(0.0, 1.0)}, others=["m"], combos=[("a",), ("b",)],
    ...             settings=adaptive_range(0.0, 1.0, batch_size=3))
    >>> new = s.ask(3)
    >>> len(new), s.npoints
    (3, 3)
    >>> spec = build_spec(base_cfg=None, overrides=None,
    ...                   workflow_overrides={"m": multirun(["a", "b"]), "x": multirun(s.axes()[0])})
    >>> len(s.cells(spec))  # every point, for both combinations
    6
    >>> s.tell(spec, [JobResult(index=i, status="done", metrics={"y": 1.0}) for i in s.cells(spec)])
    6
    """

    def __init__(
        self,
        ranges: Mapping[str, AdaptiveRange],
        *,
        others: Sequence[str],
        combos: Sequence[tuple[Any, ...]],
        settings: AdaptiveRange,
    ) -> None:
        try:
            import adaptive
        except ImportError as e:
            raise ImportError(
                f"adaptive_range(...) samples with the learners of the 'adaptive' package, which is not "
                f"installed here ({e}); pip install 'mushin-nb[adaptive]' (or pip install adaptive)."
            ) from e

        self.names = list(ranges)
        self.bounds = [(r.low, r.high) for r in ranges.values()]
        self.others = list(others)
        self.combos = [tuple(c) for c in combos]
        self.metric = settings.metric
        self._combo_index = {tuple(canonical(v) for v in c): i for i, c in enumerate(self.combos)}
        loss = _loss_function(settings.loss, len(self.names))
        if len(self.names) == 1:
            self.learners: list[Any] = [
                adaptive.Learner1D(_never_called, self.bounds[0], loss_per_interval=loss) for _ in self.combos
            ]
        else:
            box = (self.bounds[0], self.bounds[1])
            self.learners = [
                adaptive.Learner2D(_never_called, box, loss_per_triangle=loss) for _ in self.combos
            ]
        self.learner = adaptive.BalancingLearner(self.learners)
        self.points: list[Any] = []  # every point of the sweep (values as the jobs got them)
        self._known: set[Any] = set()
        self._told: set[tuple[int, Any]] = set()
        self._warned: set[str] = set()

    # ------------------------------------------------------------ points
    @property
    def npoints(self) -> int:
        """How many points the learners have (values, or pairs of values, in the bounds)."""
        return sum(1 for p in self.points if self.inside(p))

    def loss(self) -> float:
        """The learners' loss (the largest; ``inf`` before a learner has two points)."""
        return float(self.learner.loss())

    def inside(self, point: Any) -> bool:
        """Whether ``point`` (a value, or a pair) is a number inside the bounds."""
        coords = point if len(self.names) > 1 else (point,)
        return all(
            not isinstance(c, bool) and isinstance(c, (int, float)) and lo <= c <= hi
            for c, (lo, hi) in zip(coords, self.bounds)
        )

    def add(self, points: Sequence[Any]) -> None:
        """Make ``points`` points of the sweep; every learner without a result there
        waits for one (``tell_pending``). A point outside the bounds (from an earlier
        sweep of the directory) stays in the grid, unknown to the learners."""
        for p in points:
            if p in self._known:
                continue
            self._known.add(p)
            self.points.append(p)
            if not self.inside(p):
                continue
            for i, learner in enumerate(self.learners):
                x = self._numeric(p)
                if x not in learner.data:
                    self.learner.tell_pending((i, x))

    def ask(self, n: int) -> list[Any]:
        """Up to ``n`` new points, chosen by the learners; they become points of the sweep."""
        new: list[Any] = []
        for _ in range(n + 2 * len(self.learners)):  # learners may ask for the same point
            asked, _ = self.learner.ask(n - len(new))
            fresh: list[Any] = []
            for _i, p in asked:
                p = self._numeric(p)
                if p not in self._known and p not in fresh:
                    fresh.append(p)
            self.add(fresh)
            new += fresh
            if len(new) >= n or not asked:
                break
        return new

    def axes(self) -> list[list[Any]]:
        """The sorted values of each adaptive parameter over the sweep's points."""
        if len(self.names) == 1:
            return [sorted(self.points)]
        return [sorted({p[k] for p in self.points}) for k in range(len(self.names))]

    def cells(self, spec: SweepSpec) -> set[tuple[int, ...]]:
        """The cells of ``spec``'s grid that are points of the sweep, for every combination."""
        swept = spec.swept
        at = {p.name: k for k, p in enumerate(swept)}
        axes = [at[n] for n in self.names]
        pos = [{canonical(v): i for i, v in enumerate(swept[a].values)} for a in axes]
        rest = [k for k in range(len(swept)) if k not in axes]
        out: set[tuple[int, ...]] = set()
        for p in self.points:
            coords = p if len(self.names) > 1 else (p,)
            where = [table.get(canonical(c)) for table, c in zip(pos, coords)]
            if any(w is None for w in where):
                continue
            for combo in itertools.product(*(range(len(swept[k].values)) for k in rest)):
                idx = [0] * len(swept)
                for k, i in zip(axes, where):
                    idx[k] = i  # type: ignore[assignment]
                for k, i in zip(rest, combo):
                    idx[k] = i
                out.add(tuple(idx))
        return out

    def point_of(self, params: Mapping[str, Any], *, bounded: bool = True) -> tuple[int, Any] | None:
        """A cell's parameters -> (its learner, its point); None for another combination
        or (``bounded``) a point outside the bounds."""
        combo = self._combo_index.get(tuple(canonical(params.get(n)) for n in self.others))
        coords = tuple(params.get(n) for n in self.names)
        point = coords if len(self.names) > 1 else coords[0]
        if combo is None or (bounded and not self.inside(point)):
            return None
        return combo, point

    def _numeric(self, p: Any) -> Any:
        return float(p) if len(self.names) == 1 else tuple(float(c) for c in p)

    # ------------------------------------------------------------ results
    def tell(self, spec: SweepSpec, results: Sequence[JobResult]) -> int:
        """Tell the learners the finished results of ``spec``'s cells they were not told
        yet. Returns how many were told."""
        n = 0
        for r in results:
            if r.status != "done" or r.metrics is None:
                continue
            params = spec.cell_params(r.index)
            where = self.point_of(params)
            if where is None or where in self._told:
                continue
            y = self._value(r.metrics, params)
            self._told.add(where)
            if y is None:  # stays waiting in its learner: never asked for again
                continue
            self.learner.tell((where[0], self._numeric(where[1])), y)
            n += 1
        return n

    def _value(self, metrics: Mapping[str, Any], params: Mapping[str, Any]) -> float | None:
        import numpy as np

        label = ", ".join(f"{k}={v!r}" for k, v in params.items())
        if self.metric is None:
            numbers = [k for k, v in metrics.items() if np.ndim(v) == 0 and np.asarray(v).dtype.kind in "iuf"]
            if len(numbers) != 1:
                raise ValueError(
                    f"The learners of adaptive_range(...) follow one metric, and the job with {label} "
                    f"returned {len(numbers)} numbers ({', '.join(map(repr, numbers)) or 'none'}). "
                    "Name the one to follow: adaptive_range(..., metric='<name>'); the finished results "
                    "are kept, and resume=True goes on from them."
                )
            self.metric = numbers[0]
        if self.metric not in metrics:
            self._warn("missing", f"the job with {label} returned no metric {self.metric!r}")
            return None
        v = np.asarray(metrics[self.metric])
        if v.ndim != 0 or v.dtype.kind not in "iufb":
            raise ValueError(
                f"adaptive_range(..., metric={self.metric!r}): the job with {label} returned "
                f"{'an array of shape ' + str(v.shape) if v.ndim else 'a ' + v.dtype.name} for it; the "
                "learners follow one number per job. Choose a metric that is one number."
            )
        y = float(v)
        if not math.isfinite(y):
            self._warn("nan", f"the metric {self.metric!r} is {y} for the job with {label}")
            return None
        return y

    def _warn(self, kind: str, what: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(
                f"mushin_nb: {what}; the learners leave that point out (the result is kept).",
                RuntimeWarning,
                stacklevel=3,
            )
