"""The built site in a real browser (headless Chromium): math typesets, no page shows a Python
traceback, no table hides a column.

The site is built with ``make book`` unless ``FLATCOMP_SITE`` names a folder that already holds a
built site (``_build/html``). Pages are opened from disk (``file://``), as the build's last line
tells a reader to, and read after MathJax has finished. Chromium is driven through its DevTools
protocol over a pipe (``--remote-debugging-pipe``: no websocket, no new dependency). A screenshot
of every page, 1280 px wide, and close-ups of its first equation and of its wide tables, go to
``FLATCOMP_SCREENSHOTS`` (a folder) or to a temporary folder; the path is printed (``pytest -s``)
and named in every failure.

Chromium is Debian's ``chromium`` (or ``$CHROMIUM``); where there is none, the test installs it
with apt-get when it runs as root, and skips only when it can do neither. CI installs it beside
the first tests and names that install in ``$CHROMIUM_INSTALL_PID``: the test waits for it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the site (about 20 s) and drives a browser

ROOT = Path(__file__).resolve().parents[1]
MATH_PAGES = {"02_flat_minima", "03_sam_finetuning"}  # at least these must carry typeset math
WIDTH, HEIGHT = 1280, 900
MAX_SHOT_HEIGHT = 32000  # px: a bound on the bitmap; a longer page is shot down to here


# ---------------------------------------------------------------------------------------------
# Chromium: found, or installed when we may


def _find_chromium() -> str | None:
    names = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
             "google-chrome-stable"]
    return next(filter(None, (shutil.which(n) for n in names if n)), None)


def _wait_for_background_install(limit: float = 900.0) -> None:
    """Wait for the install of Chromium that ``.ci/run`` starts beside the first tests, if one
    runs (its process id in ``$CHROMIUM_INSTALL_PID``): over when /proc no longer lists it live."""
    stat = Path("/proc", os.environ.get("CHROMIUM_INSTALL_PID", "none"), "stat")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":  # exited, not yet reaped
                return
        except (OSError, IndexError):
            return
        time.sleep(2)


def _chromium_or_skip() -> str:
    _wait_for_background_install()
    found = _find_chromium()
    if found:
        return found
    if not (shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0):
        pytest.skip("no chromium on PATH (or $CHROMIUM), and no apt-get as root to install it")
    try:
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError):
        pass
    return _find_chromium() or pytest.skip(
        "no chromium on PATH (or $CHROMIUM), and `apt-get install chromium` failed")


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe: JSON messages ending in NUL,
    commands on the child's fd 3, answers and events on its fd 4."""

    def __init__(self, executable: str, profile: Path):
        # the child's ends, moved to fds 10 and up, so that neither is already 3 or 4
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w)]
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        args = [executable, "--headless", "--remote-debugging-pipe", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check",
                "--allow-file-access-from-files", f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
        # bash puts the two ends on fds 3 and 4, where Chromium looks for them
        self._proc = subprocess.Popen(
            ["bash", "-c", 'exec "$@" 3<&{0} 4>&{1} {0}<&- {1}>&-'.format(*ends), "bash",
             *args, "about:blank"],
            pass_fds=ends, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.resize(HEIGHT)

    def resize(self, height: int) -> None:
        """The viewport: WIDTH wide, this tall (the whole page, for its screenshots)."""
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH,
                  height=height, deviceScaleFactor=1, mobile=False)

    def _read_message(self, timeout: float = 60.0) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._from_child], [], [], timeout)[0]:
                raise TimeoutError(f"chromium said nothing for {timeout} s")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read_message()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, event: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.events.append(self._read_message(max(0.1, deadline - time.monotonic())))

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, clip: dict) -> None:
        """A region of the viewport (page coordinates), as PNG."""
        shot = self.send("Page.captureScreenshot", session=True, format="png",
                         clip=dict(clip, scale=1))
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


# ---------------------------------------------------------------------------------------------
# What is read from each page, in the page

# Resolves once MathJax (2 or 3) has typeset the page, or at once where the page loads none.
WAIT_FOR_MATHJAX = """
new Promise(resolve => {
  setTimeout(() => resolve('timeout'), 30000);
  (function poll() {
    const mj = window.MathJax;
    const loading = [...document.scripts].some(s => /mathjax/i.test(s.src || ''));
    if (mj && mj.Hub && mj.Hub.Register) {            // MathJax 2
      // (a hook that returned the queue's callback would hold up the startup it waits for)
      mj.Hub.Register.StartupHook('End', () => { mj.Hub.Queue(() => resolve('v2')); });
    } else if (mj && mj.startup && mj.startup.promise) {  // MathJax 3
      mj.startup.promise.then(() => resolve('v3'));
    } else if (!loading) {
      resolve('none');
    } else {
      setTimeout(poll, 50);
    }
  })();
})
"""

PAGE_HEIGHT = "document.documentElement.scrollHeight"

# Two frames and a little more: the layout after a resize, transitions over.
SETTLE = """
new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(
  () => setTimeout(resolve, 300))))
"""

INSPECT = r"""
(() => {
  const column = document.querySelector('article.bd-article') || document.querySelector('main')
                 || document.body;
  const cs = getComputedStyle(column);
  const colRect = column.getBoundingClientRect();
  const colRight = colRect.right - parseFloat(cs.paddingRight) - parseFloat(cs.borderRightWidth);
  const colWidth = column.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const box = el => { const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; };

  // "\(" or "\[" left in the text shown, outside code (a "\(" in a code cell is code)
  const raw = [], rawTables = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest('pre, code, script, style, textarea') || !el.getClientRects().length)
      continue;
    const at = node.data.search(/\\[([]/);
    if (at >= 0) raw.push(node.data.slice(Math.max(0, at - 30), at + 50).replace(/\s+/g, ' '));
    // a Markdown table's rule row (|---|, its dashes perhaps made typographic) shown as text
    const rule = node.data.search(/\|\s*:?[-\u2013\u2014]+:?\s*\|/);
    if (rule >= 0) rawTables.push(node.data.slice(Math.max(0, rule - 40), rule + 40));
  }

  const text = document.body.innerText;
  const tracebacks = [];
  for (const m of text.matchAll(/Traceback \(most recent call last\)/g)) {
    tracebacks.push(text.slice(Math.max(0, m.index - 100), m.index + 300));
  }
  const errorOutputs = document.querySelectorAll('.cell_output .traceback, .output.error').length;

  const math = document.querySelectorAll(
    '.MathJax, .MathJax_Display, .MathJax_SVG, .MathJax_CHTML, mjx-container');
  const displays = [...document.querySelectorAll(
    '.MathJax_Display, .MathJax_SVG_Display, mjx-container[display="true"]')];
  // a displayed equation drawn past its own box is cut off there (MathJax 2 clips it)
  const source = d => { const frame = d.querySelector('[id$="-Frame"]');  // MathJax 2's TeX
    const script = frame && document.getElementById(frame.id.slice(0, -6));
    return (script || d).textContent.trim().replace(/\s+/g, ' ').slice(0, 80); };
  const cut = displays.filter(d => { const right = d.getBoundingClientRect().right;
    return [...d.querySelectorAll('*')].some(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.right > right + 1; });
  }).map(source);

  const tables = [];
  column.querySelectorAll('table').forEach((table, i) => {
    const rect = table.getBoundingClientRect();
    if (!rect.width) return;                       // not shown (a collapsed cell)
    let scroller = null;
    for (let el = table.parentElement; el && el !== column; el = el.parentElement) {
      if (/^(auto|scroll)$/.test(getComputedStyle(el).overflowX)) { scroller = el; break; }
    }
    const entry = {index: i, width: Math.round(table.scrollWidth), column: Math.round(colWidth),
                   text: table.innerText.slice(0, 80).replace(/\s+/g, ' '), box: box(table)};
    if (scroller) {
      const s = scroller.getBoundingClientRect();
      entry.scrolls = table.scrollWidth > scroller.clientWidth + 1;
      entry.hidden = s.right > colRight + 1;         // the scroll box itself overflows
      entry.box = box(scroller);
    } else {
      entry.scrolls = false;
      entry.hidden = rect.right > colRight + 1 || rect.width > colWidth + 1;
    }
    tables.push(entry);
  });
  // each figure: the width it is shown at, and its own
  const images = [...column.querySelectorAll('.cell_output img')].map(
    img => ({shown: img.getBoundingClientRect().width, natural: img.naturalWidth}));
  return {math: math.length, firstDisplay: displays.length ? box(displays[0]) : null,
          cut, raw, rawTables, tracebacks, errorOutputs, tables, images,
          height: document.documentElement.scrollHeight,
          mathjaxMessage: (document.getElementById('MathJax_Message') || {}).innerText || ''};
})()
"""


# ---------------------------------------------------------------------------------------------
# Fixtures: the site, the browser, every page read once


@pytest.fixture(scope="module")
def site() -> Path:
    if os.environ.get("FLATCOMP_SITE"):
        folder = Path(os.environ["FLATCOMP_SITE"]).resolve()
        assert (folder / "index.html").is_file(), f"FLATCOMP_SITE={folder}: no index.html there"
        return folder
    venv = Path(sys.prefix)
    build = subprocess.run(["make", "-s", "book", f"VENV={venv}"], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert build.returncode == 0, f"make book failed:\n{build.stdout[-5000:]}"
    return ROOT / "_build" / "html"


@pytest.fixture(scope="module")
def pages(site, tmp_path_factory) -> tuple[dict[str, dict], Path]:
    """Every chapter page (book/*.html), read after MathJax, with its screenshots taken."""
    executable = _chromium_or_skip()
    shots = Path(os.environ.get("FLATCOMP_SCREENSHOTS") or tmp_path_factory.mktemp("site-shots"))
    shots.mkdir(parents=True, exist_ok=True)
    files = sorted((site / "book").glob("*.html"))
    assert files, f"no chapter pages under {site / 'book'}"
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="flatcomp-chromium-") as profile:
        browser = Browser(executable, Path(profile))
        try:
            for file in files:
                browser.resize(HEIGHT)
                browser.open(file.as_uri())
                mathjax = browser.evaluate(WAIT_FOR_MATHJAX)
                # the whole page in the viewport, so that the screenshots need no relayout
                # (captureBeyondViewport lays the page out again, sidebars sliding)
                height = min(browser.evaluate(PAGE_HEIGHT), MAX_SHOT_HEIGHT)
                browser.resize(height)
                browser.evaluate(SETTLE)
                page = browser.evaluate(INSPECT)
                page["mathjax"] = mathjax
                page["has_math"] = 'class="math' in file.read_text(encoding="utf8")
                found[file.stem] = page
                _screenshots(browser, shots, file.stem, page, height)
        finally:
            browser.close()
    print(f"\nscreenshots of the site: {shots}")
    return found, shots


def _screenshots(browser: Browser, shots: Path, name: str, page: dict, height: int) -> None:
    """The page, its first displayed equation, and every table as wide as its column."""
    browser.screenshot(shots / f"{name}.png", {"x": 0, "y": 0, "width": WIDTH, "height": height})
    close_ups = {f"{name}-math": page["firstDisplay"]} if page["firstDisplay"] else {}
    close_ups.update((f"{name}-table{t['index']}", t["box"]) for t in page["tables"]
                     if t["width"] >= t["column"] - 1 or t["scrolls"] or t["hidden"])
    for shot, box in close_ups.items():
        top = max(0, box["y"] - 60)  # 60 px above and below, no more than a screen, on the page
        clip_height = min(box["height"] + 120, HEIGHT, height - top)
        if clip_height > 0:
            browser.screenshot(shots / f"{shot}.png",
                               {"x": 0, "y": top, "width": WIDTH, "height": clip_height})


# ---------------------------------------------------------------------------------------------
# The checks


def test_math_is_typeset(pages):
    found, shots = pages
    with_math = {name for name, page in found.items() if page["has_math"]}
    assert MATH_PAGES <= with_math, f"pages without math markup: {MATH_PAGES - with_math}"
    bad = {}
    for name in sorted(with_math):
        page = found[name]
        if (page["math"] == 0 or page["raw"] or page["cut"]
                or page["mathjax"] not in ("v2", "v3")):
            bad[name] = {"mathjax": page["mathjax"], "typeset": page["math"],
                         "raw": page["raw"][:3], "cut off": page["cut"][:3],
                         "message": page["mathjaxMessage"]}
    assert not bad, (f"math not typeset, or cut off (screenshots in {shots}):\n"
                     f"{json.dumps(bad, indent=1)}")


def test_no_traceback(pages):
    found, shots = pages
    bad = {name: page["tracebacks"][:1] or f"{page['errorOutputs']} error outputs"
           for name, page in found.items() if page["tracebacks"] or page["errorOutputs"]}
    assert not bad, f"pages showing a traceback (screenshots in {shots}):\n" + "\n".join(
        f"{name}: {shown}" for name, shown in bad.items())


def test_no_markdown_table_is_left_as_text(pages):
    """A table that a chapter prints as Markdown (its cut table, say) is rendered as a table."""
    found, shots = pages
    bad = {name: page["rawTables"][:2] for name, page in found.items() if page["rawTables"]}
    assert not bad, f"Markdown tables shown as text (screenshots in {shots}):\n" + "\n".join(
        f"{name}: {shown}" for name, shown in bad.items())


def test_no_table_hides_a_column(pages):
    found, shots = pages
    bad = [f"{name}: table {t['index']} ({t['text']!r}...) is {t['width']} px in a "
           f"{t['column']} px column" for name, page in found.items()
           for t in page["tables"] if t["hidden"]]
    assert not bad, f"tables wider than their column, with no scroll box of their own " \
                    f"(screenshots in {shots}):\n" + "\n".join(bad)


def test_figures_are_shown_at_their_size_up_to_the_column(pages):
    """tests/test_figures.py sizes the figures' text for a column COLUMN_PX wide, where an image
    is shown at its own size up to that width: the site must do so."""
    from test_figures import COLUMN_PX

    found, shots = pages
    images = [(name, i) for name, page in found.items() for i, _ in enumerate(page["images"])]
    assert images, "no figure on any page"
    bad = [f"{name}: figure {i} ({image['natural']} px) is shown {image['shown']:.0f} px wide"
           for name, page in found.items() for i, image in enumerate(page["images"])
           if image["shown"] < min(image["natural"], COLUMN_PX) - 1]
    assert not bad, f"figures shown smaller than tests/test_figures.py assumes " \
                    f"(screenshots in {shots}):\n" + "\n".join(bad)
