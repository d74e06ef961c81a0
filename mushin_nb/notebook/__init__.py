"""The notebook layer: ``%%mushin_sweep`` (``magic``), the sweep panel (``panel``,
``robustness``), the live view (``view``) and ``mushin-nb serve`` (``serve``).

Nothing here imports panel or hvplot until it is used.
"""
