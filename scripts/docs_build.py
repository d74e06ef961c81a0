"""Build the docs' executed pages: what users see, produced offline from the sources.

The site shows the notebooks of ``notebooks/`` (``NOTEBOOKS``) and the examples of the
pages in ``MD_PAGES`` with the output they produce, plots included as static PNG
images. None of it is in git: this script executes the sources in a real Jupyter
kernel (nbclient), in a temporary directory, and writes

- ``docs/<page>.ipynb`` for each notebook (rendered by mkdocs-jupyter), each interactive
  output (hvplot/HoloViews, Panel) replaced by a PNG of its final state, rendered by
  Chromium (Playwright) with every request served from the installed packages, and each
  progress widget by the text of its final state;
- ``docs/generated/<page>.json`` (and PNGs of the figures) with the outputs of each
  example of the page, which :func:`on_page_markdown` shows under the example;
- ``docs/generated/stamp.json``: the digest of the sources these files come from.

The file is also the MkDocs hook of ``mkdocs.yml``: ``mkdocs build`` rebuilds the
files whenever the digest differs, so the site cannot show the output of other code
than the notebooks and pages it is built from. A cell that fails, an output with a
warning or a numpy repr (``np.float64(...)``), or a plot that asks for a URL off this
machine fails the build.

Usage: ``python scripts/docs_build.py [--force]`` (``.ci/run`` runs it before
``mkdocs build --strict``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OUT = DOCS / "generated"
STAMP = OUT / "stamp.json"
# source in notebooks/ -> executed copy in docs/ (the page's name on the site)
NOTEBOOKS = {
    "tutorial.ipynb": "tutorial.ipynb",
    "live_sweeps.ipynb": "live_sweeps.ipynb",
    "robustness.ipynb": "robustness_notebook.ipynb",
}
MD_PAGES = ["robustness.md"]
CHROMIUM = "/usr/bin/chromium"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
NO_RUN = re.compile(r"<!--\s*no-run\s*-->\s*$")
RAISES = re.compile(r"<!--\s*raises:\s*[\w.]+\s*-->\s*$")
NUMPY_REPR = re.compile(r"\bnp\.(str_|bytes_|bool_|u?int\d*|float\d*|complex\d*|datetime64|timedelta64)\(")
WARNING = re.compile(r"\b\w*(Warning|WARNING)\b")
EXEC_MIME = "application/vnd.holoviews_exec.v0+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SCRIPT_MIMES = {"application/javascript", "application/vnd.holoviews_load.v0+json"}

# run in the kernel after the last cell: every shown Panel/HoloViews object, in its
# final state, saved as a standalone page with the JavaScript inline
EPILOGUE = """
def _docs_save_views(directory, refs):
    from bokeh.resources import INLINE
    from panel.io.state import state
    from panel.viewable import Viewable

    for ref in refs:
        if isinstance(state._views.get(ref, (None,))[0], Viewable):
            state._views[ref][0].save(f"{directory}/{ref}.html", resources=INLINE)


_docs_save_views(%r, %r)
"""


class DocsBuildError(Exception):
    """What in the docs' sources keeps them from building (a failing cell, a warning)."""


def md_blocks(text: str) -> list[dict]:
    """The runnable examples of a page, in order: ``{"lang", "code", "end", "raises"}``
    (``end``: the offset just after the closing fence); what ``tests/test_docs.py`` runs."""
    out = []
    for m in FENCE.finditer(text):
        lang = m.group(1).lower()
        if lang not in ("python", "py", "ipython"):
            continue
        before = text[: m.start()].rstrip("\n").splitlines()
        last = before[-1] if before else ""
        if NO_RUN.search(last):
            continue
        out.append({"lang": lang, "code": m.group(2), "end": m.end(), "raises": bool(RAISES.search(last))})
    return out


def digest() -> str:
    """The digest of everything the generated files depend on in this repository."""
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    for name in sorted(NOTEBOOKS):
        h.update(name.encode() + (ROOT / "notebooks" / name).read_bytes())
    for page in MD_PAGES:
        code = [b["code"] for b in md_blocks((DOCS / page).read_text(encoding="utf-8"))]
        h.update(page.encode() + json.dumps(code).encode())
    return h.hexdigest()


def generated_files() -> list[Path]:
    return [DOCS / n for n in NOTEBOOKS.values()] + [OUT / f"{p}.json" for p in MD_PAGES]


def is_fresh() -> bool:
    """The generated files exist and were built from the current sources."""
    try:
        stamp = json.loads(STAMP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stamp.get("digest") == digest() and all(p.exists() for p in generated_files())


@contextmanager
def _kernel_env(work: Path):
    """The kernel's environment: figures inline (CI exports MPLBACKEND=Agg, which would
    hide them), temporary files in the work directory."""
    saved = dict(os.environ)
    os.environ.update(MPLBACKEND="module://matplotlib_inline.backend_inline", TMPDIR=str(work))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute(nb, work: Path, where: str):
    """Execute ``nb`` in place in a fresh kernel started in ``work``; then save each
    Panel/HoloViews object an output shows to ``work/views/<id>.html``."""
    import nbclient
    import nbformat

    views = work / "views"
    views.mkdir(exist_ok=True)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    with _kernel_env(work), client.setup_kernel():
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        except nbclient.exceptions.CellExecutionError as e:
            raise DocsBuildError(f"{where}: a cell failed:\n{e}") from None
        refs = [o.metadata[EXEC_MIME]["id"] for o in _outputs(nb) if EXEC_MIME in o.get("metadata", {})]
        if refs:
            nb.cells.append(nbformat.v4.new_code_cell(EPILOGUE % (str(views), refs)))
            try:
                client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
            finally:
                nb.cells.pop()
        client.set_widgets_metadata()
    return {p.stem: p for p in views.glob("*.html")}


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def screenshots(pages: dict[str, Path]) -> dict[str, bytes]:
    """PNG of each saved page (cropped to its content), rendered by Chromium offline:
    Panel's stylesheets are served from the installed package, any other request that
    would leave this machine fails the build."""
    if not pages:
        return {}
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise DocsBuildError(
            f"{CHROMIUM} is missing: `apt-get install chromium` (the plots are rendered by it)"
        )
    import panel

    cdn = f"https://cdn.holoviz.org/panel/{panel.__version__}/dist/"
    dist = Path(panel.__file__).parent / "dist"
    external: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:", "blob:")):
            return r.continue_()
        local = dist / url[len(cdn) :].split("?")[0] if url.startswith(cdn) else None
        if local is not None and local.is_file():
            return r.fulfill(path=str(local))
        external.append(url)
        return r.abort()

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 500})
            page.route("**/*", route)
            for ref, path in sorted(pages.items()):
                page.goto(path.as_uri())
                page.wait_for_function(
                    "() => window.Bokeh !== undefined && Bokeh.documents.length > 0"
                    " && Bokeh.documents.every((d) => d.is_idle)",
                    timeout=60_000,
                )
                out[ref] = _crop(page.screenshot(full_page=True))
        finally:
            browser.close()
    if external:
        raise DocsBuildError(f"a plot asked for URLs off this machine: {sorted(set(external))}")
    return out


def _crop(png: bytes) -> bytes:
    from io import BytesIO

    from PIL import Image, ImageChops

    im = Image.open(BytesIO(png)).convert("RGB")
    box = ImageChops.difference(im, Image.new("RGB", im.size, im.getpixel((0, 0)))).getbbox()
    if box is not None:
        pad = 8
        im = im.crop((max(box[0] - pad, 0), max(box[1] - pad, 0), box[2] + pad, box[3] + pad))
    buf = BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _widget_text(model_id: str, widgets: dict) -> str | None:
    """The text of a progress bar (tqdm's HBox of HTML, FloatProgress, HTML) in its
    final state, as the notebook shows it at the end; ``None`` for other widgets."""
    state = widgets.get(model_id, {}).get("state", {})
    parts = []
    for child in state.get("children", []):
        s = widgets.get(str(child).replace("IPY_MODEL_", ""), {})
        name, st = s.get("model_name"), s.get("state", {})
        if name == "HTMLModel":
            parts.append(html.unescape(str(st.get("value", ""))).replace("\u2007", " "))
        elif name in ("FloatProgressModel", "IntProgressModel"):
            filled = round(10 * float(st.get("value", 0)) / max(float(st.get("max", 1)), 1e-12))
            parts.append("|" + "█" * filled + " " * (10 - filled) + "|")
        else:
            return None
    return "".join(parts) if parts else None


def _visible(html_text: str) -> bool:
    return bool(re.sub(r"<(script|style)\b.*?</\1>", "", html_text, flags=re.S | re.I).strip())


def clean_outputs(nb, shots: dict[str, bytes], where: str) -> None:
    """Outputs as a reader sees them at the end, in place: plots as PNG, progress
    widgets as their final text, no script payloads; warnings and numpy reprs fail."""
    widgets = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        kept = []
        for o in cell.outputs:
            data = o.get("data", {})
            if o.output_type == "stream":
                _check_text(o.text, f"{where}, code cell {n + 1}", stderr=o.name == "stderr")
                kept.append(o)
                continue
            if o.output_type == "error":
                kept.append(o)  # a page's <!-- raises: --> example
                continue
            if not data:
                continue
            if "xr-wrap" in data.get("text/html", "") and "text/plain" in data:
                del data["text/html"]  # xarray's HTML repr needs Jupyter's CSS: its text
            ref = o.get("metadata", {}).get(EXEC_MIME, {}).get("id")
            if EXEC_MIME in data or ref:
                if ref not in shots:
                    continue  # the extension's own comm model: nothing to see
                o.data = {
                    "image/png": base64.b64encode(shots[ref]).decode(),
                    "text/plain": data.get("text/plain", ""),
                }
                o.metadata = {}
            elif WIDGET_MIME in data:
                text = _widget_text(data[WIDGET_MIME]["model_id"], widgets)
                o.data = {"text/plain": text if text is not None else data.get("text/plain", "")}
            elif set(data) <= SCRIPT_MIMES or (
                set(data) == {"text/html"} and not _visible(data["text/html"])
            ):
                continue
            _check_text(str(o.data.get("text/plain", "")), f"{where}, code cell {n + 1}")
            kept.append(o)
        cell.outputs = kept


def _check_text(text: str, where: str, stderr: bool = False) -> None:
    if stderr and WARNING.search(text):
        raise DocsBuildError(f"{where} prints a warning: {text.strip()[:300]}")
    m = NUMPY_REPR.search(text)
    if m:
        raise DocsBuildError(f"{where} shows a numpy repr ({m.group(0)}...): {text.strip()[:300]}")


def build_notebook(src: str, dest: str, tmp: Path) -> float:
    """Execute ``notebooks/<src>`` and write the page ``docs/<dest>``; the seconds taken."""
    import nbformat

    t0 = time.monotonic()
    work = tmp / src.replace(".", "_")
    work.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / src, as_version=4)
    pages = execute(nb, work, f"notebooks/{src}")
    clean_outputs(nb, screenshots(pages), f"notebooks/{src}")
    nb.metadata.setdefault("mushin_nb_docs", {})["source"] = f"notebooks/{src}"
    page = DOCS / dest
    if page.is_symlink():  # never write through a link into notebooks/
        page.unlink()
    nbformat.write(nb, page)
    return time.monotonic() - t0


def build_md_page(page: str, tmp: Path) -> float:
    """Execute the examples of ``docs/<page>`` (as cells of one notebook, as
    ``tests/test_docs.py`` runs them) and write their outputs to ``docs/generated``."""
    import nbformat

    t0 = time.monotonic()
    work = tmp / page.replace(".", "_")
    work.mkdir()
    blocks = md_blocks((DOCS / page).read_text(encoding="utf-8"))
    cells = []
    for b in blocks:
        cell = nbformat.v4.new_code_cell(b["code"])
        if b["raises"]:
            cell.metadata["tags"] = ["raises-exception"]
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    pages = execute(nb, work, f"docs/{page}")
    clean_outputs(nb, screenshots(pages), f"docs/{page}")
    stem = Path(page).stem
    for old in OUT.glob(f"{stem}-*.png"):
        old.unlink()
    records = []
    for i, (b, cell) in enumerate(zip(blocks, nb.cells)):
        outs = []
        for k, o in enumerate(cell.outputs):
            if o.output_type == "stream":
                outs.append({"text": o.text})
            elif "image/png" in o.get("data", {}):
                name = f"{stem}-{i + 1}-{k + 1}.png"
                (OUT / name).write_bytes(base64.b64decode(o.data["image/png"]))
                outs.append({"image": f"generated/{name}"})
            elif "text/plain" in o.get("data", {}):
                outs.append({"text": o.data["text/plain"] + "\n"})
        records.append({"code": b["code"], "outputs": outs})
    (OUT / f"{page}.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return time.monotonic() - t0


def build(force: bool = False, log=print) -> bool:
    """Build the generated files if they are missing or stale (or ``force``); whether it ran."""
    if not force and is_fresh():
        return False
    OUT.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="mushin-docs-") as tmp:
        for src, dest in NOTEBOOKS.items():
            log(
                f"docs: executed notebooks/{src} -> docs/{dest} in {build_notebook(src, dest, Path(tmp)):.0f} s"
            )
        for page in MD_PAGES:
            log(f"docs: executed the examples of docs/{page} in {build_md_page(page, Path(tmp)):.0f} s")
    STAMP.write_text(json.dumps({"digest": digest()}), encoding="utf-8")
    return True


# ---- MkDocs hook (mkdocs.yml: hooks) ----


def on_pre_build(config, **kwargs) -> None:
    import logging

    from mkdocs.exceptions import PluginError

    log = logging.getLogger("mkdocs.hooks.docs_build").info
    try:
        build(log=log)
    except DocsBuildError as e:
        raise PluginError(f"scripts/docs_build.py: {e}") from None


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    """Each example of a page of ``MD_PAGES`` followed by what it printed and drew."""
    from mkdocs.exceptions import PluginError

    name = page.file.src_uri
    if name not in MD_PAGES:
        return markdown
    records = json.loads((OUT / f"{name}.json").read_text(encoding="utf-8"))
    blocks = md_blocks(markdown)
    if [b["code"] for b in blocks] != [r["code"] for r in records]:
        raise PluginError(f"docs/generated/{name}.json is stale: run python scripts/docs_build.py")
    pieces, start = [], 0
    for b, r in zip(blocks, records):
        pieces.append(markdown[start : b["end"]])
        start = b["end"]
        for o in r["outputs"]:
            if "image" in o:
                pieces.append(f"\n\n![What the example above draws]({o['image']}){{ .docs-output }}\n")
            elif o["text"].strip():
                pieces.append(f'\n\n```text title="Output"\n{o["text"].rstrip()}\n```\n')
    pieces.append(markdown[start:])
    return "".join(pieces)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    force = "--force" in argv
    t0 = time.monotonic()
    try:
        ran = build(force=force)
    except DocsBuildError as e:
        print(f"docs build failed: {e}", file=sys.stderr)
        return 1
    print(f"docs: {'built' if ran else 'up to date'} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
