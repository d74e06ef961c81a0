"""Damage stays local: what a reader found damaged, and how it is told.

A reader (a reload, ``mushin-nb check``) collects a :class:`Damage` per damaged file
or record and goes on; the cells it cost are failed stand-ins (error type
:data:`DAMAGED`, which ``resume=True`` re-runs). What was found is told once:
:func:`warn_damage` or :func:`damage_report`.

Examples
--------
>>> d = Damage(Path("/s/.mushin/index.jsonl"), "is not a JSON record (torn or garbled)", line=3)
>>> d.describe("/s")
'.mushin/index.jsonl line 3 is not a JSON record (torn or garbled)'
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._layout import DAMAGED
from ._records import JobResult

__all__ = ["Damage", "damage_report", "is_damaged", "report_damage", "warn_damage"]


@dataclass
class Damage:
    """One damaged file or record of a sweep directory, found by a reader.

    ``marker`` is the stand-in result of the cell it cost (status ``"failed"``, error
    type :data:`DAMAGED`: resume=True re-runs it), when that cell is known.
    ``repairable``: ``mushin-nb check --repair`` rebuilds it. ``fatal``: the sweep's
    results cannot be placed at all (a lost manifest).

    Examples
    --------
    >>> d = Damage(Path("/s/0/mushin_result.npz"), "is missing", fix="resume=True re-runs it", cell="x=1")
    >>> d.where("/s")
    '0/mushin_result.npz'
    >>> d.describe("/s")
    '0/mushin_result.npz is missing (the job with x=1): resume=True re-runs it'
    """

    path: Path
    problem: str
    fix: str = ""
    line: int | None = None
    marker: JobResult | None = None
    repairable: bool = False
    fatal: bool = False
    cell: str = ""  # the job's parameters, when known

    def where(self, sweep_dir: Path | str | None = None) -> str:
        """The damaged file (relative to ``sweep_dir`` if given) and line."""
        p = Path(self.path)
        if sweep_dir is not None:
            try:
                p = p.relative_to(sweep_dir)
            except ValueError:
                pass
        return str(p) + (f" line {self.line}" if self.line else "")

    def describe(self, sweep_dir: Path | str | None = None) -> str:
        """One line: where, what is wrong, whose cell, and the fix."""
        s = f"{self.where(sweep_dir)} {self.problem}"
        if self.cell:
            s += f" (the job with {self.cell})"
        return s + (f": {self.fix}" if self.fix else "")


def is_damaged(r: JobResult) -> bool:
    """True for the stand-in result of a cell whose stored result is damaged.

    Examples
    --------
    >>> is_damaged(JobResult(index=(0,), status="failed", error={"type": DAMAGED, "message": ""}))
    True
    >>> is_damaged(JobResult(index=(0,), status="failed", error={"type": "ValueError", "message": ""}))
    False
    """
    return r.status == "failed" and isinstance(r.error, Mapping) and r.error.get("type") == DAMAGED


def damage_report(sweep_dir: Path | str, damage: Iterable[Damage], limit: int = 20) -> str:
    """A report naming each damaged file (the first ``limit``) and how to check and repair.

    Examples
    --------
    >>> print(damage_report("/s", [Damage(Path("/s/.mushin/manifest.json"), "is empty")]))
    mushin_nb: /s has damaged files or records; everything else was read (the damage stays local):
      - .mushin/manifest.json is empty
    `mushin-nb check /s` reports the directory's health; `mushin-nb check --repair /s` rebuilds what can be rebuilt.
    """
    damage = list(damage)
    lines = [
        f"mushin_nb: {sweep_dir} has damaged files or records; everything else was read "
        "(the damage stays local):"
    ]
    lines += [f"  - {d.describe(sweep_dir)}" for d in damage[:limit]]
    if len(damage) > limit:
        lines.append(f"  ... and {len(damage) - limit} more")
    lines.append(
        f"`mushin-nb check {sweep_dir}` reports the directory's health; "
        f"`mushin-nb check --repair {sweep_dir}` rebuilds what can be rebuilt."
    )
    return "\n".join(lines)


def warn_damage(sweep_dir: Path | str, damage: Iterable[Damage], *, stacklevel: int = 2) -> None:
    """One RuntimeWarning naming every damaged file in ``damage`` (none if empty).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_damage("/s", [])
    ...     warn_damage("/s", [Damage(Path("/s/0/mushin_result.json"), "is empty")])
    >>> len(w), w[0].category.__name__
    (1, 'RuntimeWarning')
    """
    damage = list(damage)
    if damage:
        warnings.warn(damage_report(sweep_dir, damage), RuntimeWarning, stacklevel=stacklevel + 1)


def report_damage(
    sweep_dir: Path, found: list[Damage], damage: list[Damage] | None, *, stacklevel: int = 3
) -> None:
    """Add what a reader ``found`` to the caller's ``damage`` list, or warn about it
    when the caller gave none (the default ``stacklevel`` points the warning at the code
    that called the reader that calls this function).

    Examples
    --------
    >>> found = [Damage(Path("/s/x"), "is empty")]
    >>> mine: list = []
    >>> report_damage(Path("/s"), found, mine)
    >>> mine == found
    True
    """
    if damage is None:
        warn_damage(sweep_dir, found, stacklevel=stacklevel)
    else:
        damage.extend(found)
