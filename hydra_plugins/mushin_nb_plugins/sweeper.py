"""The mushin_nb grid sweeper: Hydra's basic sweeper that skips cells a resumed
sweep already holds, numbers new jobs after the existing ones, stops starting
batches after a cancel, and never raises for a failed job (mushin_nb records it).

Kept light: Hydra imports every module under ``hydra_plugins`` when it scans for
plugins. No ``from __future__ import annotations`` here: Hydra's scanner executes the
module without registering it in ``sys.modules``, and dataclasses with string
annotations then fail to build, breaking every Hydra app in the environment.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf


@dataclass
class MushinSweeperConf:
    _target_: str = "hydra_plugins.mushin_nb_plugins.sweeper.MushinSweeper"
    max_batch_size: int | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="mushin_nb", node=MushinSweeperConf, provider="mushin_nb"
)


class MushinSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=None)

    def sweep(self, arguments: list[str]) -> Any:
        from mushin_nb._registry import live_state
        from mushin_nb._sweep import parse_job_overrides

        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        state = live_state(str(self.config.hydra.sweep.dir))
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(list(arguments))
        (all_jobs,) = self.split_arguments(overrides, None)
        if state is not None and state.skip:
            all_jobs = [j for j in all_jobs if parse_job_overrides(j, state.lookup) not in state.skip]
        n = self.max_batch_size if self.max_batch_size not in (None, -1) else max(len(all_jobs), 1)
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


__all__ = ["MushinSweeper", "MushinSweeperConf"]
