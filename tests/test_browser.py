"""The widgets in a real browser: headless Chromium driven over the DevTools protocol (CDP).

* ``test_stepper_in_jupyterlab``: JupyterLab on a free local port (127.0.0.1 only, a random token)
  serves a small notebook written into ``tmp_path`` that creates a ``DetectionStepper`` on one
  Shapes image. Chromium opens it, runs the cell, checks the widget's picture, clicks "next" and
  picks a stage in the dropdown, and checks each time that the picture changed, the caption is the
  new stage's, and no error appeared; and that the static picture is hidden under the live widget.
* ``test_offline_html_shows_the_static_picture``: a notebook with chapter 01's explorer, executed
  as ``jupyter nbconvert --execute`` does (widget state stored), exported to HTML, and opened
  offline: the explorer's static picture is what shows.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it with apt); the tests skip, saying
so, when no Chromium executable is found. Nothing is downloaded: Chromium resolves no host but
127.0.0.1, and JupyterLab serves its own files. The DevTools client is ``websocket-client``
(a dependency of ``jupyter_server``).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

websocket = pytest.importorskip("websocket",
                                reason="websocket-client (a jupyter_server dependency) is not installed")

REPO = Path(__file__).resolve().parent.parent
MODEL_PATH = REPO / "data" / "shapes_model" / "model.pt"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH): install Debian's `chromium` "
    "package, as .ci/run does",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.25):
    """Poll ``condition()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Browser:
    """Headless Chromium, one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path, width: int = 1200, height: int = 1000):
        profile.mkdir(parents=True, exist_ok=True)
        self.log = open(profile / "chromium.log", "w")
        self.process = subprocess.Popen(
            [
                CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                # Offline: every host name but the local server's fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-allow-origins=*",
                f"--window-size={width},{height}", "about:blank",
            ],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        active_port = profile / "DevToolsActivePort"
        wait_for(lambda: active_port.exists() and active_port.read_text().strip(), 30,
                 "Chromium's DevTools port")
        port = int(active_port.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [target for target in json.load(answer) if target["type"] == "page"]
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60,
                                                  suppress_origin=True)
        self.next_id = 0
        self.console_errors: list[str] = []
        self.send("Runtime.enable")
        self.send("Page.enable")

    def send(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("method") == "Runtime.exceptionThrown":
                self.console_errors.append(message["params"]["exceptionDetails"].get("text", ""))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description", details)
            raise RuntimeError(f"{expression[:80]}...: {description}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.log.close()


@pytest.fixture
def browser(tmp_path):
    chromium = Browser(tmp_path / "chromium-profile", width=1000, height=1000)
    yield chromium
    chromium.close()


def write_notebook(path: Path, *sources: str) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)


class JupyterLab:
    """``jupyter lab`` on a free port of 127.0.0.1 with a random token, serving ``root`` only, with
    its settings, workspaces and runtime files in ``home`` (nothing of the user's is read or written)."""

    def __init__(self, root: Path, home: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        environment = dict(os.environ)
        for variable, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                                 ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                                 ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):
            environment[variable] = str(home / folder)
        # No news, no update checks: the page asks nothing and fetches nothing.
        settings = home / "settings" / "@jupyterlab" / "apputils-extension"
        notifications = settings / "notification.jupyterlab-settings"
        notifications.parent.mkdir(parents=True, exist_ok=True)
        notifications.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
        environment["OMP_NUM_THREADS"] = "1"
        environment.pop("MASKRCNN_EDU_SMOKE", None)
        self.log = open(home / "jupyterlab.log", "w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            stdout=self.log, stderr=subprocess.STDOUT, env=environment, cwd=root,
        )
        wait_for(self._answers, 60, f"JupyterLab on port {self.port} (log: {home / 'jupyterlab.log'})")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with code {self.process.returncode}")
        try:
            with urllib.request.urlopen(self.url("api/status"), timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# JavaScript run in the page ----------------------------------------------------------------------

NOTEBOOK = "Array.from(jupyterapp.shell.widgets('main')).find(widget => widget.sessionContext)"

KERNEL_IDLE = """(() => {
  if (!window.jupyterapp) return false;
  const panel = NOTEBOOK;
  return !!panel && panel.sessionContext.isReady && panel.sessionContext.kernelDisplayStatus === 'idle';
})()""".replace("NOTEBOOK", NOTEBOOK)

RUN_ALL = """(async () => {
  const panel = NOTEBOOK;
  jupyterapp.shell.activateById(panel.id);
  await jupyterapp.commands.execute('notebook:run-all-cells');
  return true;
})()""".replace("NOTEBOOK", NOTEBOOK)

PICTURE = """(async () => {
  const img = document.querySelector('.jp-OutputArea-output .widget-image');
  if (!img || !img.src) return null;
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
})()"""

CAPTION = "(document.querySelector('.jp-OutputArea-output .widget-html-content') || {}).textContent || ''"

ERRORS = """Array.from(document.querySelectorAll(
  '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output.jp-mod-error'
)).map(node => node.textContent).concat(
  Array.from(document.querySelectorAll('.jp-OutputArea-output'))
    .filter(node => node.textContent.includes('Error displaying widget')).map(node => node.textContent))"""


FIT = """Array.from(document.querySelectorAll('.jp-OutputArea-output > .widget-vbox')).map(box => {
  const area = box.closest('.jp-OutputArea-output');
  const right = area.getBoundingClientRect().right;
  return {
    column: area.clientWidth,
    overflow: Math.max(area.scrollWidth - area.clientWidth, box.scrollWidth - box.clientWidth),
    readouts: Array.from(area.querySelectorAll('.widget-readout'))
      .map(readout => readout.getBoundingClientRect().right <= right && readout.textContent.trim() !== ''),
  };
})"""


STORED_PICTURES = """(() => {
  if (!window.jupyterapp) return null;
  const panel = Array.from(jupyterapp.shell.widgets('main'))
    .find(widget => widget.context && widget.context.path === 'stored.ipynb');
  if (!panel || !panel.context.isReady) return null;
  const shown = Array.from(panel.node.querySelectorAll('.jp-OutputArea-output img'))
    .filter(img => img.naturalWidth > 0 && img.getBoundingClientRect().height > 0)
    .map(img => [img.naturalWidth, img.naturalHeight, !!img.closest('.maskrcnn-edu-static')]);
  return shown.length ? shown : null;
})()"""


def picture(browser: Browser) -> bytes | None:
    encoded = browser.evaluate(PICTURE)
    return base64.b64decode(encoded) if encoded else None


def check_no_errors(browser: Browser) -> None:
    errors = browser.evaluate(ERRORS)
    assert not errors, f"error output in the notebook: {errors}"


def test_stepper_in_jupyterlab(tmp_path, browser, stored_explorer):
    import nbformat

    root = tmp_path / "notebooks"
    root.mkdir()
    nbformat.write(stored_explorer, root / "stored.ipynb")
    write_notebook(
        root / "stepper.ipynb",
        "from maskrcnn_edu import MaskRCNN\n"
        "from maskrcnn_edu.data import ShapesDataset\n"
        "from maskrcnn_edu.explorers.stepper import DetectionStepper\n"
        f"model = MaskRCNN.from_checkpoint({str(MODEL_PATH)!r}).eval()\n"
        "stepper = DetectionStepper(model, {'shapes 0': ShapesDataset(1, seed=3)[0][0]})\n"
        "stepper",
        "from maskrcnn_edu.explorers.roi import RoIExplorer\nRoIExplorer()",
    )
    lab = JupyterLab(root, tmp_path / "jupyter-home")
    try:
        browser.open(lab.url("lab/tree/stepper.ipynb"))
        # The page is up when the app object is exposed and the notebook's kernel is idle.
        wait_for(lambda: browser.evaluate(KERNEL_IDLE), 60, "the notebook and its kernel")
        browser.evaluate(RUN_ALL)

        first = wait_for(lambda: picture(browser), 60, "the stepper's picture")
        assert first.startswith(b"\x89PNG")
        assert browser.evaluate(CAPTION).startswith("Input:")
        widget_images = "document.querySelectorAll('.jp-OutputArea-output .widget-image').length"
        wait_for(lambda: browser.evaluate(widget_images) == 2, 30, "the RoI explorer")
        # The static pictures are in the outputs, but hidden under the live widgets: no duplicates.
        assert browser.evaluate(
            "Array.from(document.querySelectorAll('.maskrcnn-edu-static'))"
            ".map(n => getComputedStyle(n).display)"
        ) == ["none", "none"]
        # A 1000-pixel window with the file browser open leaves a column of about 550 pixels:
        # both widgets fit it (no sideways scrolling) and every slider shows its value.
        for widget in browser.evaluate(FIT):
            assert widget["overflow"] <= 0, widget
            assert widget["readouts"] and all(widget["readouts"]), widget
        check_no_errors(browser)

        # Click "next": the anchors stage.
        browser.evaluate("Array.from(document.querySelectorAll('.jp-OutputArea-output button'))"
                         ".find(b => b.textContent.includes('next')).click()")
        second = wait_for(lambda: (lambda p: p if p and p != first else None)(picture(browser)), 30,
                          "a new picture after clicking next")
        assert browser.evaluate(CAPTION).startswith("Anchors:")

        # Choose a stage in the dropdown, as a reader's mouse does: set the <select> and fire "change".
        browser.evaluate("""(() => {
          const select = Array.from(document.querySelectorAll('.jp-OutputArea-output select'))
            .find(s => Array.from(s.options).some(o => o.textContent === 'NMS'));
          select.value = Array.from(select.options).find(o => o.textContent === 'NMS').value;
          select.dispatchEvent(new Event('change', {bubbles: true}));
        })()""")
        wait_for(lambda: "are suppressed" in browser.evaluate(CAPTION), 30, "the NMS stage's caption")
        assert browser.evaluate(CAPTION).startswith("NMS:") and "cut" in browser.evaluate(CAPTION)
        third = wait_for(lambda: (lambda p: p if p and p not in (first, second) else None)(picture(browser)),
                         30, "a new picture for the NMS stage")
        assert third.startswith(b"\x89PNG")
        check_no_errors(browser)
        browser.screenshot(tmp_path / "stepper.png")  # for a look: pytest --basetemp=DIR keeps it

        # A stored notebook opened without running it (untrusted: JupyterLab renders no widget
        # view): the explorer's static picture shows, once.
        browser.open(lab.url("lab/tree/stored.ipynb"))
        pictures = wait_for(lambda: browser.evaluate(STORED_PICTURES), 30, "the stored notebook's picture")
        assert pictures == [[720, 672, True]]
        check_no_errors(browser)
    except Exception:
        browser.screenshot(tmp_path / "failure.png")  # kept in tmp_path for a look
        raise
    finally:
        lab.close()


@pytest.fixture(scope="module")
def stored_explorer(tmp_path_factory):
    """A notebook showing chapter 01's explorer, executed as ``jupyter nbconvert --execute`` does:
    its outputs and the widget state are stored in it."""
    import nbformat
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("stored")
    path = folder / "explorer.ipynb"
    write_notebook(path, "from maskrcnn_edu.explorers.roi import RoIExplorer\nRoIExplorer()")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    assert "application/vnd.jupyter.widget-state+json" in notebook.metadata["widgets"]
    return notebook


# Every picture the page shows in an output area: [width, height, inside the static picture?].
VISIBLE_PICTURES = """Array.from(document.querySelectorAll('ROOT .jp-OutputArea-output img'))
  .filter(img => img.getBoundingClientRect().width > 0 && img.getBoundingClientRect().height > 0)
  .map(img => [img.naturalWidth, img.naturalHeight, !!img.closest('.maskrcnn-edu-static')])"""


@pytest.mark.parametrize("widget_state", ["stored", "left out"])
def test_offline_html_shows_the_static_picture(tmp_path, browser, stored_explorer, widget_state):
    import copy

    from nbconvert import HTMLExporter

    notebook = copy.deepcopy(stored_explorer)
    if widget_state == "left out":  # as `--ExecutePreprocessor.store_widget_state=False` leaves it
        del notebook.metadata["widgets"]
    # With the state stored, nbconvert's HTML shows the widget view: an empty <div> filled in by a
    # script from a CDN, unreachable offline. Either way the page must show the picture, once.
    body, _ = HTMLExporter().from_notebook_node(notebook)
    page = tmp_path / "explorer.html"
    page.write_text(body)
    browser.open(page.as_uri())
    wait_for(lambda: browser.evaluate("document.readyState") == "complete", 30, "the HTML page")
    assert browser.evaluate(VISIBLE_PICTURES.replace("ROOT", "body")) == [[720, 672, True]]
