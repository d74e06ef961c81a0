"""``mushin-nb serve MODULE_OR_FILE:CLASS``: the sweep panel as a web page.

Panel's (bokeh's) server on 127.0.0.1, with its resources served by itself: no
internet needed. Each browser session gets its own panel; sweeps still run one at
a time per server process.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

__all__ = ["serve", "add_cli", "load_target"]


def load_target(target: str) -> Any:
    """``"package.module:Name"`` or ``"path/to/file.py:Name"`` -> the object.

    >>> load_target("mushin_nb._demo:LRSweep").__name__
    'LRSweep'
    """
    mod, sep, name = target.rpartition(":")
    if not sep or not mod or not name:
        raise ValueError(
            f"serve: {target!r} names no object; write MODULE:CLASS (e.g. mypkg.sweeps:LRSweep) "
            "or FILE.py:CLASS (e.g. sweeps.py:LRSweep)."
        )
    path = Path(mod)
    if mod.endswith(".py") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"serve: the file {path} does not exist.")
        modname = f"_mushin_serve_{path.stem}"
        spec = importlib.util.spec_from_file_location(modname, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module  # picklable for process launchers
        sys.path.insert(0, str(path.resolve().parent))
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            raise ValueError(
                f"serve: cannot import {mod!r} ({e}); is it installed or on PYTHONPATH?"
            ) from None
    obj: Any = module
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(module) if not n.startswith("_")]
            raise ValueError(f"serve: {mod} has no {name!r}; it defines: {', '.join(names)}") from None
    return obj


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def serve(
    target: Any,
    port: int = 0,
    show: bool = False,
    *,
    address: str = "127.0.0.1",
    threaded: bool = False,
    title: str | None = None,
    **kw: Any,
) -> Any:
    """Serve the sweep panel of ``target`` (``"module:Class"``, ``"file.py:Class"``,
    a workflow or a task function) on ``http://127.0.0.1:PORT/``.

    ``port=0`` picks a free port. ``kw`` pre-fills the panel (as
    :func:`mushin_nb.sweep_panel`). With ``threaded=True`` returns at once with a
    thread whose ``.stop()`` ends the server (and ``.url``); otherwise blocks until
    Ctrl-C.
    """
    from . import _deps
    from .panel import sweep_panel

    pn = _deps.pn()
    obj = load_target(target) if isinstance(target, str) else target
    sweep_panel(obj, **kw)  # fail now (bad target or arguments), not in the first session
    if port == 0:
        port = _free_port(address)
    name = getattr(obj, "__name__", type(obj).__name__)

    def app() -> Any:
        return sweep_panel(obj, **kw).panel()

    url = f"http://{address}:{port}/"
    print(f"mushin-nb: serving the {name} panel at {url} (Ctrl-C stops)", file=sys.stderr)
    server = pn.serve(
        app,
        port=port,
        address=address,
        websocket_origin=[f"{address}:{port}", f"localhost:{port}"],
        show=show,
        threaded=threaded,
        title=title or f"mushin-nb: {name}",
        start=True,
    )
    try:
        server.url = url
    except AttributeError:  # pragma: no cover
        pass
    return server


def _cmd(args: argparse.Namespace) -> int:
    kw: dict[str, Any] = {}
    if args.working_dir:
        kw["working_dir"] = args.working_dir
    if args.launcher:
        kw["launcher"] = args.launcher
    try:
        serve(args.target, port=args.port, show=args.show, address=args.address, **kw)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"mushin-nb serve: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "serve",
        help="serve the sweep panel of MODULE_OR_FILE:CLASS as a web page on 127.0.0.1",
        description="Serve the sweep panel of a workflow class (or task function) with Panel's server, "
        "offline, on 127.0.0.1.",
    )
    p.add_argument(
        "target", metavar="MODULE_OR_FILE:CLASS", help="e.g. mypkg.sweeps:LRSweep or sweeps.py:LRSweep"
    )
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--show", action="store_true", help="open a browser")
    p.add_argument("-d", "--working-dir", help="pre-fill the working directory")
    p.add_argument("--launcher", help="pre-select a launcher")
    p.set_defaults(func=_cmd)
    return p
