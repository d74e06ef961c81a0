"""A test sweeper that loses a job: Hydra's basic grid with its last job never
launched (as a buggy or interrupted third-party sweeper or launcher would)."""

from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class DropSweeperConf:
    _target_: str = "hydra_plugins.mushin_test_plugins.drop_sweeper.DropSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="mushin_test_drop_last", node=DropSweeperConf)


class DropSweeper(BasicSweeper):
    def __init__(self) -> None:
        super().__init__(max_batch_size=None)

    def sweep(self, arguments: list[str]) -> Any:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        (jobs,) = self.split_arguments(parser.parse_overrides(arguments), None)
        return [self.launcher.launch(jobs[:-1], initial_job_idx=0)]
