"""The workflow that ``mushin-nb serve tests/e2e/apps/serve_app.py:Squares`` serves in the e2e test."""

import time

from mushin_nb import MultiRunMetricsWorkflow


class Squares(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, delay: float = 0.2) -> dict:
        time.sleep(delay)
        return dict(y=x * x)
