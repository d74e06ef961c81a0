"""A test sweeper: Hydra's basic grid, launched in reverse order and one job per batch."""

from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class ReverseSweeperConf:
    _target_: str = "hydra_plugins.mushin_test_plugins.reverse_sweeper.ReverseSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="mushin_test_reverse", node=ReverseSweeperConf)


class ReverseSweeper(BasicSweeper):
    def __init__(self) -> None:
        super().__init__(max_batch_size=None)

    def sweep(self, arguments: list[str]) -> Any:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        (jobs,) = self.split_arguments(parser.parse_overrides(arguments), None)
        jobs = jobs[::-1]
        returns = []
        for i, job in enumerate(jobs):
            returns.append(self.launcher.launch([job], initial_job_idx=i))
        return returns
