"""``mushin-nb serve MODULE_OR_FILE:CLASS``: the sweep panel as a web page.

Panel's (bokeh's) server on 127.0.0.1, with its resources served by itself: no
internet needed. Each browser session gets its own panel; sweeps still run one at
a time per server process.

Who may use it, as with Jupyter: the server binds a loopback address only; every
page, session and websocket request must name the server by ``127.0.0.1:PORT`` or
``localhost:PORT`` in its Host header (anything else, e.g. a DNS-rebinding site,
gets 403) and carry the token: a random one made at start (or ``token=``,
``--token``, ``$MUSHIN_NB_TOKEN``), given once in the URL printed at start
(``http://127.0.0.1:PORT/?token=...``) or as an ``Authorization: token ...`` header,
then kept by the browser in an HttpOnly, SameSite=Strict cookie so Panel's own
follow-up requests pass. Without it: 401; with a wrong one: 403. ``token=""``
(``--no-token``) turns the token off, with a warning; the Host check stays. The
static library files (bokeh's and panel's JS and CSS) are served to anyone on the
loopback, as Jupyter serves its own.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import importlib
import importlib.util
import ipaddress
import os
import re
import secrets
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["serve", "add_cli", "load_target", "TOKEN_ENV"]

TOKEN_ENV = "MUSHIN_NB_TOKEN"
"""The environment variable read for the token when none is given (keeps it out of ``ps``)."""


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


def _loopback(address: str) -> str:
    """``address`` if it is an IPv4 loopback address (``localhost`` -> ``127.0.0.1``)."""
    if address == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is None or ip.version != 4 or not ip.is_loopback:
        raise ValueError(
            f"serve: address={address!r} is refused; the panel runs code as you, so it binds a "
            "loopback address only (the default 127.0.0.1). To use it from another machine, "
            "tunnel to it: ssh -L PORT:127.0.0.1:PORT THIS_HOST, then open the printed URL there."
        )
    return address


def _check_token(token: Any) -> str:
    if not isinstance(token, str):
        raise TypeError(f"serve: token must be a string (or '' for no token), got {type(token).__name__}.")
    if token and (token != token.strip() or not token.isprintable()):
        raise ValueError(
            "serve: token must be printable with no surrounding spaces; e.g. token=secrets.token_hex(24)."
        )
    return token


class _Gate:
    """Who may talk to one server: a request whose Host header names it
    (``127.0.0.1:PORT`` / ``localhost:PORT``) and that carries its token, in the
    query (``?token=``), an ``Authorization: token ...`` header, or the cookie the
    first such request sets. ``token=""``: the Host check only."""

    def __init__(self, address: str, port: int, token: str) -> None:
        self.address, self.port = address, port
        self.token = token or None
        self.hosts = sorted({f"{address}:{port}", f"127.0.0.1:{port}", f"localhost:{port}"})
        self.cookie = f"mushin_nb_token_{port}"  # cookies are per host, not per port
        key = (token or "").encode()
        self._proof = hmac.new(key, b"mushin-nb serve cookie", hashlib.sha256).hexdigest()

    @property
    def url(self) -> str:
        """The URL to open: ``http://ADDRESS:PORT/?token=TOKEN``."""
        q = f"?token={quote(self.token, safe='')}" if self.token else ""
        return f"http://{self.address}:{self.port}/{q}"

    def check(self, handler: Any) -> str:
        """The user of an allowed request (bokeh's ``get_user``); any other request
        is ended here: 403 for a foreign Host or a wrong token, 401 without a token."""
        req = handler.request
        if str(req.host).lower() not in self.hosts:
            self._refuse(
                handler,
                403,
                f"This server answers to {' or '.join(self.hosts)} only; this request named "
                f"the host {req.host!r} (a page of another site, or a proxy, cannot use it).",
            )
        if self.token is None:
            return "local"
        given = handler.get_query_argument("token", None)
        auth = req.headers.get("Authorization", "")
        if not given and auth[:6].lower() == "token ":
            given = auth[6:].strip()
        if given:
            if hmac.compare_digest(given.encode(), self.token.encode()):
                handler.set_cookie(self.cookie, self._proof, path="/", httponly=True, samesite="Strict")
                return "local"
            self._refuse(
                handler,
                403,
                "Wrong token. Open the URL that mushin-nb serve printed at start "
                "(http://127.0.0.1:PORT/?token=...), or paste its token below.",
                form=True,
            )
        cookie = handler.get_cookie(self.cookie)
        if cookie and hmac.compare_digest(cookie.encode(), self._proof.encode()):
            return "local"
        self._refuse(
            handler,
            401,
            "This server needs its token. Open the URL that mushin-nb serve printed at start "
            "(http://127.0.0.1:PORT/?token=...), or paste its token below.",
            form=True,
        )
        raise AssertionError("unreachable")  # pragma: no cover

    def _refuse(self, handler: Any, status: int, why: str, form: bool = False) -> None:
        from tornado.web import Finish

        body = f"<!doctype html><title>mushin-nb serve: {status}</title><p>{html.escape(why)}</p>"
        if form:
            body += (
                '<form method="get" action="/"><input name="token" type="password" '
                'placeholder="token" autofocus> <button type="submit">Open</button></form>'
            )
        handler.clear()
        handler.set_status(status)
        handler.set_header("Content-Type", "text/html; charset=UTF-8")
        handler.set_header("Cache-Control", "no-store")
        if status == 401:
            handler.set_header("WWW-Authenticate", 'Token realm="mushin-nb serve"')
        raise Finish(body)


_TOKEN_IN_URI = re.compile(r"(?i)([?&]token=)[^&#]*")


def _log_request(handler: Any) -> None:
    """tornado's access log line, with any ``token=`` in the URI hidden."""
    from tornado.log import access_log

    status = handler.get_status()
    log = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    req = handler.request
    uri = _TOKEN_IN_URI.sub(r"\1[hidden]", req.uri or "")
    log("%d %s %s (%s) %.2fms", status, req.method, uri, req.remote_ip, 1000.0 * req.request_time())


def _auth_provider(gate: _Gate) -> Any:
    """A bokeh ``AuthProvider`` whose ``get_user`` is ``gate.check``: bokeh and panel
    call it for the page, its sessions, metadata, autoload and the websocket."""
    from bokeh.server.auth_provider import AuthProvider
    from tornado.web import RequestHandler

    class _Login(RequestHandler):
        def get(self) -> None:
            gate.check(self)
            self.redirect("/")

    class _TokenAuth(AuthProvider):
        @property
        def get_user(self) -> Any:
            return gate.check

        @property
        def login_url(self) -> str:
            return "/login"

        @property
        def login_handler(self) -> Any:
            return _Login

    return _TokenAuth()


def serve(
    target: Any,
    port: int = 0,
    show: bool = False,
    *,
    address: str = "127.0.0.1",
    threaded: bool = False,
    title: str | None = None,
    token: str | None = None,
    **kw: Any,
) -> Any:
    """Serve the sweep panel of ``target`` (``"module:Class"``, ``"file.py:Class"``,
    a workflow or a task function) on ``http://127.0.0.1:PORT/?token=TOKEN``.

    ``port=0`` picks a free port. ``token=None`` uses ``$MUSHIN_NB_TOKEN`` or a
    random token; ``token=""`` serves without one (a warning is printed; only do it
    on a machine no one else uses). The URL to open, with its token, is printed and
    set as ``.url`` on the returned server. ``address`` must be a loopback address.
    ``kw`` pre-fills the panel (as :func:`mushin_nb.sweep_panel`). With
    ``threaded=True`` returns at once with a thread whose ``.stop()`` ends the
    server; otherwise blocks until Ctrl-C.
    """
    from . import _deps
    from .panel import sweep_panel

    address = _loopback(address)
    if token is None:
        token = os.environ.get(TOKEN_ENV) or secrets.token_hex(24)
    token = _check_token(token)
    pn = _deps.pn()
    obj = load_target(target) if isinstance(target, str) else target
    sweep_panel(obj, **kw)  # fail now (bad target or arguments), not in the first session
    if port == 0:
        port = _free_port(address)
    gate = _Gate(address, port, token)
    name = getattr(obj, "__name__", type(obj).__name__)

    def app() -> Any:
        return sweep_panel(obj, **kw).panel()

    url = gate.url
    if not token:
        print(
            "mushin-nb serve: WARNING: no token (--no-token / token=''): any user or program on this "
            f"machine can open {url} and run sweeps as you. Serve with a token unless you alone use "
            "this machine.",
            file=sys.stderr,
        )
    opts: dict[str, Any] = dict(
        port=port,
        address=address,
        websocket_origin=list(gate.hosts),  # bokeh refuses websockets from any other page
        title=title or f"mushin-nb: {name}",
        verbose=False,  # panel's own banner would print the URL without its token
        show=False,
        auth_provider=_auth_provider(gate),
        log_function=_log_request,  # tornado's setting: the access log never shows the token
    )
    banner = f"mushin-nb: serving the {name} panel at {url} (Ctrl-C stops)"
    if threaded:
        print(banner, file=sys.stderr)
        server = pn.serve(app, threaded=True, start=True, **opts)
        server.url = url
        if show:
            import webbrowser

            webbrowser.open(url)
        return server
    server = pn.serve(app, threaded=False, start=False, **opts)  # listening from here on
    server.url = url
    print(banner, file=sys.stderr, flush=True)
    if show:
        import webbrowser

        server.io_loop.add_callback(webbrowser.open, url)
    server.start()
    try:
        server.io_loop.start()
    except RuntimeError:  # pragma: no cover - a loop already running (panel does the same)
        pass
    return server


def _cmd(args: argparse.Namespace) -> int:
    kw: dict[str, Any] = {}
    if args.working_dir:
        kw["working_dir"] = args.working_dir
    if args.launcher:
        kw["launcher"] = args.launcher
    token = "" if args.no_token else args.token
    try:
        serve(args.target, port=args.port, show=args.show, address=args.address, token=token, **kw)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"mushin-nb serve: {e}".replace("serve: serve:", "serve:"), file=sys.stderr)
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
        "offline, on 127.0.0.1. Like Jupyter it needs a token: open the URL it prints "
        "(http://127.0.0.1:PORT/?token=...).",
    )
    p.add_argument(
        "target", metavar="MODULE_OR_FILE:CLASS", help="e.g. mypkg.sweeps:LRSweep or sweeps.py:LRSweep"
    )
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument(
        "--address",
        default="127.0.0.1",
        help="loopback address to bind (default: 127.0.0.1; no other is accepted)",
    )
    p.add_argument("--show", action="store_true", help="open a browser")
    p.add_argument("-d", "--working-dir", help="pre-fill the working directory")
    p.add_argument("--launcher", help="pre-select a launcher")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument(
        "--token",
        default=None,
        help=f"the token the browser must give (default: ${TOKEN_ENV} if set, else a random one, printed in the URL)",
    )
    tok.add_argument(
        "--no-token",
        action="store_true",
        help="no token: anyone on this machine can use the panel (a warning is printed)",
    )
    p.set_defaults(func=_cmd)
    return p
