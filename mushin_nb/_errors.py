"""The engine's errors that each surface says in its own terms.

:class:`SweepError` keeps what happened (``summary``), the failed jobs with their
parameters (``failures``), the finished results (``dataset``), where they are
(``sweep_dir``) and the kind of fix (``fix``); the API's message gives the fix as
keyword arguments, and the magic, the panel and the CLI re-render it with
:meth:`SweepError.in_terms` as their options, controls and flags.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from ._execution import JobFailure

__all__ = ["SweepError", "outside_frames", "refusal", "rephrase"]

_PACKAGE = str(Path(__file__).resolve().parent)


def outside_frames(tb: TracebackType | None) -> list[str]:
    """The caller's own frames of ``tb``: those before the first frame inside this
    package (the user's cells and modules, not IPython's own code), formatted as
    ``traceback.format_list`` does.

    >>> outside_frames(None)
    []
    """
    import os

    ipython = None
    try:
        import IPython

        ipython = str(Path(IPython.__file__).resolve().parent) + os.sep
    except ImportError:  # pragma: no cover
        pass
    keep = []
    for fr in traceback.extract_tb(tb):
        f = fr.filename if fr.filename.startswith("<") else os.path.realpath(fr.filename)
        if f.startswith(_PACKAGE + os.sep):
            break  # from here on: this package's internals (and what they call)
        if ipython is None or not f.startswith(ipython):
            keep.append(fr)
    return [t.rstrip("\n") for t in traceback.format_list(keep)]


def refusal(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a function that checks a user's arguments: a ``ValueError``,
    ``TypeError``, ``OSError`` or an error whose class sets ``is_refusal`` (another
    sweep running, a locked directory) out of it is a refusal, which IPython shows with the
    caller's frames and the message only (:func:`outside_frames`); elsewhere (a script,
    a debugger) its traceback is whole.

    >>> @refusal
    ... def check(n):
    ...     if n < 0:
    ...         raise ValueError(f"n={n}: give n >= 0")
    >>> try:
    ...     check(-1)
    ... except ValueError as e:
    ...     print(e._render_traceback_()[-1])
    ValueError: n=-1: give n >= 0
    """

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            refused = isinstance(e, (ValueError, TypeError, OSError)) or getattr(e, "is_refusal", False)
            if refused and not hasattr(e, "_render_traceback_"):
                e._render_traceback_ = functools.partial(_render, e)  # type: ignore[attr-defined]
            raise

    return checked


def rephrase(message: str, terms: list[tuple[re.Pattern[str], str]]) -> str:
    """``message`` with each pattern of ``terms`` replaced, in order: how a surface
    (the magic, the panel, the CLI) names the engine's keyword arguments its own way.

    >>> rephrase("pass resume=True", [(re.compile(r"resume=True"), "--resume")])
    'pass --resume'
    """
    for pat, repl in terms:
        message = pat.sub(repl, message)
    return message


def _render(e: BaseException) -> list[str]:
    return [*outside_frames(e.__traceback__), f"{type(e).__name__}: {e}"]


class SweepError(RuntimeError):
    """Raised by a blocking ``run()`` when jobs failed (``on_error="collect"`` or
    ``"stop"``), or when the sweep itself stopped (a full disk). ``err.dataset`` holds
    every finished result, ``err.failures`` one :class:`JobFailure` per failed job,
    ``err.summary`` what happened, ``err.sweep_dir`` where the results are and
    ``err.fix`` the kind of fix: ``"rerun_failed"`` (resume the sweep to run the failed
    cells) or ``"resume_rest"`` (resume it to run the rest). The message gives the fix as
    keyword arguments; the magic and the CLI say it as their options (:meth:`in_terms`).

    Examples
    --------
    >>> from mushin_nb import MultiRunMetricsWorkflow, SweepError, multirun
    >>> class Half(MultiRunMetricsWorkflow):
    ...     @staticmethod
    ...     def task(x: int) -> dict:
    ...         if x == 1:
    ...             raise ValueError("odd")
    ...         return dict(y=x)
    >>> import tempfile
    >>> try:
    ...     Half().run(x=multirun([0, 1]), working_dir=tempfile.mkdtemp(), progress=False)
    ... except SweepError as e:
    ...     err = e
    >>> print(err.failures[0].line(), err.dataset["y"].values.tolist()[0])
    [x=1] ValueError: odd 0.0
    >>> err.fix, err.summary.splitlines()[0]
    ('rerun_failed', '1 of 2 jobs of Half failed:')
    >>> print(err.in_terms("Run the cell again with --resume.").args[0])
    1 of 2 jobs of Half failed:
      [x=1] ValueError: odd
    Run the cell again with --resume.
    """

    def __init__(
        self,
        message: str,
        dataset: Any = None,
        failures: list[JobFailure] | None = None,
        *,
        summary: str | None = None,
        sweep_dir: Any = None,
        fix: str | None = None,
    ):
        super().__init__(message)
        self.dataset = dataset
        self.failures = failures or []
        self.summary = summary if summary is not None else message  # what happened, no advice
        self.sweep_dir = sweep_dir
        self.fix = fix  # "rerun_failed" (jobs failed), "resume_rest" (the sweep stopped), or None
        self.show_frames = True

    def in_terms(self, advice: str, summary: str | None = None) -> SweepError:
        """The same error with ``advice`` (the fix in a surface's own terms: the
        magic's options, the CLI's flags) in place of the API's (and ``summary``, if
        given, in place of the summary); each surface renders :attr:`fix` for
        :attr:`sweep_dir` its own way."""
        summary = self.summary if summary is None else summary
        err = SweepError(
            f"{summary}\n{advice}" if advice else summary,
            self.dataset,
            self.failures,
            summary=summary,
            sweep_dir=self.sweep_dir,
            fix=self.fix,
        )
        err.__cause__ = self.__cause__
        err.show_frames = False  # raised by a surface: its frames are not the user's
        return err

    def _render_traceback_(self) -> list[str]:
        """How IPython shows it: the caller's own frames and the message, without the
        frames inside this package (a job's failure is not a fault in them; each job's
        traceback is in its directory)."""
        return _render(self) if self.show_frames else [f"{type(self).__name__}: {self}"]
