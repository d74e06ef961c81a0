"""Fixtures for the browser tests: one Jupyter server per front end (JupyterLab,
Notebook 7) per session, one Chromium, a fresh page (and workspace, and kernel) per
test, with its console errors and every request that leaves 127.0.0.1 collected.

Run: ``pytest tests/e2e -o addopts=""`` (the project's addopts ignore tests/e2e).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest
from _lab import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    FRONTENDS,
    ExternalRequests,
    LabServer,
    LogWatch,
    Notebook,
    PageErrors,
)

_DURATIONS: dict[str, float] = {}

_MISSING = None
if not os.path.exists(CHROMIUM):
    _MISSING = f"{CHROMIUM} is missing (apt-get install chromium); the e2e tests drive Debian's Chromium"
elif importlib.util.find_spec("playwright") is None:
    _MISSING = "the python package playwright is not installed (pip install playwright; no browser download)"
elif importlib.util.find_spec("jupyterlab") is None:
    _MISSING = "jupyterlab is not installed"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if _MISSING:
                item.add_marker(pytest.mark.skip(reason=_MISSING))


def pytest_runtest_logreport(report):
    if "e2e" in report.keywords and report.when in ("setup", "call", "teardown"):
        _DURATIONS[report.nodeid] = _DURATIONS.get(report.nodeid, 0.0) + report.duration
        if report.when == "call":
            _DURATIONS[report.nodeid + "::outcome"] = report.outcome  # type: ignore[assignment]
        elif report.outcome != "passed":
            _DURATIONS[report.nodeid + "::outcome"] = f"{report.when} {report.outcome}"  # type: ignore


def pytest_sessionfinish(session, exitstatus):
    if not _DURATIONS:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lines = []
    total = 0.0
    for k, v in _DURATIONS.items():
        if k.endswith("::outcome"):
            continue
        total += v
        lines.append(f"{v:7.1f} s  {_DURATIONS.get(k + '::outcome', '?'):8}  {k}")
    lines.append(f"{total:7.1f} s  total of the scenarios (setup+call+teardown)")
    (ARTIFACTS / "durations.txt").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- servers, browser


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session", params=FRONTENDS)
def jupyter(request, tmp_path_factory, artifacts):
    """A Jupyter server on 127.0.0.1 (no token, no news): JupyterLab, then Notebook 7
    (pytest runs the tests of one front end, then stops its server before the next
    starts; ``@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)`` limits a
    test to one front end)."""
    frontend = request.param
    t0 = time.perf_counter()
    server = LabServer(tmp_path_factory.mktemp(frontend), artifacts / f"{frontend}.log", frontend)
    print(f"\n{frontend} up at {server.url} in {time.perf_counter() - t0:.1f} s")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, request, artifacts):
    """A fresh browser context and page (1280x800); console errors collected in
    ``page.errors`` (a :class:`PageErrors`)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    context.set_default_timeout(30_000)
    external = ExternalRequests(context)  # the offline check, in every test
    pg = context.new_page()
    external.watch(pg)
    errors = PageErrors()
    pg.on("console", errors.on_console)
    pg.on("pageerror", errors.on_pageerror)
    pg.errors = errors  # type: ignore[attr-defined]
    pg.external = external  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        try:
            pg.screenshot(path=str(artifacts / f"{_shot_prefix(request)}-FAILED.png"))
        except Exception:
            pass
    context.close()
    print(f"\n{request.node.name}: {time.perf_counter() - t0:.1f} s with the page open")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


# ----------------------------------------------------------------------------- checks


@pytest.fixture()
def jupyter_log(jupyter):
    return LogWatch(jupyter.log_text)


@pytest.fixture()
def open_notebook(page, jupyter):
    """``open_notebook("x.ipynb")``: a :class:`Notebook` in a fresh workspace and
    kernel of this test's front end; its kernel is shut down after the test."""
    opened: list[str] = []

    def open_(name: str, timeout: float = 60) -> Notebook:
        opened.append(name)
        return Notebook(page, jupyter, name, timeout)

    yield open_
    for name in opened:
        try:
            jupyter.shutdown_sessions(name)
        except OSError as e:  # the server is gone: it shut its kernels down with it
            print(f"\ncould not shut down the kernel of {name}: {e}")


def _shot_prefix(request) -> str:
    """``<frontend>-<scenario>`` (``test_`` dropped) or just the scenario."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    scenario = request.node.originalname.removeprefix("test_")
    return f"{params['jupyter']}-{scenario}" if "jupyter" in params else scenario


@pytest.fixture()
def shot(page, artifacts, request):
    """``shot("state")`` saves a screenshot test-artifacts/e2e/<frontend>-<scenario>-<n>-<state>.png."""
    n = [0]

    def take(state: str, full_page: bool = False) -> Path:
        n[0] += 1
        path = artifacts / f"{_shot_prefix(request)}-{n[0]}-{state}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture()
def clock(request):
    t0 = time.perf_counter()
    yield
    print(f"\n[e2e] {request.node.name}: {time.perf_counter() - t0:.1f} s")
