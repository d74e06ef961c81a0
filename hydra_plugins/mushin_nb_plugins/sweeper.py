"""The mushin_nb grid sweeper (``hydra/sweeper=mushin_nb``): Hydra's basic grid
sweep (the cartesian product of the swept values, in batches of
``max_batch_size``) that skips cells a resumed sweep already holds, numbers new
jobs after the existing ones, stops starting batches after a cancel, and never
raises for a failed job (mushin_nb records it).

It implements Hydra's public ``Sweeper`` interface; the live state of a mushin_nb
sweep comes from ``mushin_nb._registry.live_state`` (by ``hydra.sweep.dir``).

Kept light: Hydra imports every module under ``hydra_plugins`` when it scans for
plugins. No ``from __future__ import annotations`` here: Hydra's scanner executes the
module without registering it in ``sys.modules``, and dataclasses with string
annotations then fail to build, breaking every Hydra app in the environment.
"""

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

__all__ = ["MushinSweeper", "MushinSweeperConf", "grid_jobs"]


@dataclass
class MushinSweeperConf:
    """``hydra/sweeper=mushin_nb``'s settings."""

    _target_: str = "hydra_plugins.mushin_nb_plugins.sweeper.MushinSweeper"
    max_batch_size: int | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="mushin_nb", node=MushinSweeperConf, provider="mushin_nb"
)


def grid_jobs(overrides: list[Any]) -> list[list[str]]:
    """The jobs of a grid sweep: one list of overrides per cell of the cartesian
    product of the (parsed) overrides' values, in Hydra's basic sweeper's order
    (a key given twice keeps its last value).

    Examples
    --------
    >>> from hydra.core.override_parser.overrides_parser import OverridesParser
    >>> grid_jobs(OverridesParser.create().parse_overrides(["a=1,2", "b=x", "c=range(2)"]))
    [['a=1', 'b=x', 'c=0'], ['a=1', 'b=x', 'c=1'], ['a=2', 'b=x', 'c=0'], ['a=2', 'b=x', 'c=1']]
    """
    from hydra.errors import HydraException

    final: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            final[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            final[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            kind = o.value_type.name if o.value_type is not None else "?"
            raise HydraException(
                f"MushinSweeper does not support sweep type : {kind} ({o.input_line}); "
                "give the values as a list (x=1,2,3), range(...) or choice(...)"
            )
    return [list(x) for x in itertools.product(*final.values())]


class MushinSweeper(Sweeper):
    """Hydra's basic grid sweeper with mushin_nb's resume, numbering and cancel.

    Parameters
    ----------
    max_batch_size : int, optional
        Jobs handed to the launcher at a time (None or -1: all at once).
    """

    def __init__(self, max_batch_size: int | None = None) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.hydra_context: Any = None
        self.config: Any = None
        self.launcher: Any = None
        self.overrides: list[list[list[str]]] | None = None
        self.batch_index = 0

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        """Hydra's ``Sweeper.setup``: keep the context and config, make the launcher."""
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _parse(self, arguments: list[str]) -> list[Any]:
        """Hydra's ``parse_overrides``; a long simple sweep (``x=0,1,...``) without
        its ANTLR grammar, which takes ~40 ms per 1,000 values (``QuickParser``)."""
        from ._quick import QuickParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        quick = QuickParser(parser.parse_override)
        out = []
        for text in arguments:
            o = quick.parse_sweep(text)
            if o is None:
                (o,) = parser.parse_overrides([text])  # its own errors
            else:
                o.config_loader = parser.config_loader  # as parse_overrides sets it
            out.append(o)
        return out

    def sweep(self, arguments: list[str]) -> Any:
        """Run the grid of ``arguments`` (Hydra overrides) in batches; returns the
        batches' JobReturns."""
        from mushin_nb._registry import live_state
        from mushin_nb._sweep import parse_job_overrides

        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        state = live_state(str(self.config.hydra.sweep.dir))
        all_jobs = grid_jobs(self._parse(list(arguments)))
        if state is not None and state.skip:
            all_jobs = [j for j in all_jobs if parse_job_overrides(j, state.lookup) not in state.skip]
        n = self.max_batch_size if self.max_batch_size not in (None, -1) else max(len(all_jobs), 1)
        assert n is not None
        self.overrides = [all_jobs[i : i + n] for i in range(0, len(all_jobs), n)]

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        idx = state.start_num if state is not None else 0
        returns: list[Any] = []
        for batch in self.overrides:
            if state is not None and state.cancel.is_set():
                break
            results = self.launcher.launch(batch, initial_job_idx=idx)
            idx += len(batch)
            returns.append(list(results))
        self.batch_index = len(self.overrides)
        return returns
