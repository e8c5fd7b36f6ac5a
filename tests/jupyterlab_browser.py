"""JupyterLab in a real (headless Chromium) browser, for tests and for timing notebooks by hand.

``LabSession(root)`` starts ``jupyter lab`` on 127.0.0.1 (a free port, a random token, no browser, `root` as its root
folder, settings in a temp folder: no news pop-up, every cell kept in the page), opens headless Chromium through
selenium and chromedriver, and always shuts both down (REST shutdown of the server and its kernels, then the
process group). Every wait has a timeout.

By hand, the time each notebook takes in JupyterLab (Run > Run All Cells until the last cell is done):

    python tests/jupyterlab_browser.py --out tests/output/browser notebooks/00_quickstart.ipynb ...

(each notebook is copied into a temp root and run with its committed default parameters unless
``--parameters '{"name": value}'`` is given; screenshots and timings.json go to ``--out``).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_CANDIDATES = ("chromedriver",)

LAB_SETTINGS = {
    # every cell stays in the DOM (no virtual scrolling), so selectors find off-screen outputs
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no "receive official Jupyter news?" toast over the page
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                          "checkForUpdates": False},
}


def browser_binaries() -> tuple[str | None, str | None]:
    """Paths of Chromium and chromedriver, or None where missing."""
    browser = next((shutil.which(b) for b in CHROMIUM_CANDIDATES if shutil.which(b)), None)
    driver = next((shutil.which(d) for d in DRIVER_CANDIDATES if shutil.which(d)), None)
    return browser, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_parameters(notebook: Path, parameters: dict) -> None:
    """Append assignments to the cell tagged `parameters` (as papermill's injection would, but in place, so the
    notebook opened in JupyterLab runs with them)."""
    data = json.loads(notebook.read_text())
    cell = next((c for c in data["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    source = "".join(cell["source"]).rstrip("\n")
    source += "\n# set for this run\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell["source"] = source.splitlines(keepends=True)
    notebook.write_text(json.dumps(data, indent=1))


class LabError(RuntimeError):
    pass


class LabSession:
    """A JupyterLab server and a headless Chromium driving it; a context manager that always cleans up."""

    def __init__(self, root: str | Path, *, log_path: str | Path | None = None, width: int = 1500,
                 height: int = 1300, start_timeout: float = 150, env: dict | None = None):
        self.root = Path(root)
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout, self.width, self.height = start_timeout, width, height
        self.log_path = Path(log_path) if log_path else self.root.parent / "jupyterlab.log"
        self.extra_env = dict(env or {})
        self.process = None
        self.driver = None
        self._tmp = None

    # ----------------------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "LabSession":
        try:
            self._start_server()
            self._start_browser()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start_server(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="kadapter-lab-"))
        settings = self._tmp / "settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep), "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(
            self._tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(self._tmp / "runtime"),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               **self.extra_env}
        env.pop("KADAPTER_PROGRESS", None)  # a person in JupyterLab: live bars
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--ServerApp.open_browser=False", "--LabApp.news_url=",
             "--ServerApp.shutdown_no_activity_timeout=900", "--MappingKernelManager.cull_idle_timeout=900",
             "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
            cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabError(f"jupyter lab exited with {self.process.returncode}; log {self.log_path}:\n"
                               + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise LabError(f"jupyter lab did not answer on {self.url} within {self.start_timeout:.0f} s; log "
                       f"{self.log_path}")

    def _start_browser(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        browser, driver = browser_binaries()
        if not (browser and driver):
            raise LabError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--window-size={self.width},{self.height}", "--disable-extensions", "--no-first-run"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.driver.set_page_load_timeout(120)
        self.driver.set_script_timeout(60)

    def close(self) -> None:
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:  # noqa: BLE001 - best effort; the server must still go down
                pass
            self.driver = None
        if self.process is not None and self.process.poll() is None:
            try:  # shuts down the kernels too
                request = urllib.request.Request(f"{self.url}/api/shutdown?token={self.token}", method="POST")
                urllib.request.urlopen(request, timeout=10).close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # --------------------------------------------------------------------------------------------- browsing
    def wait(self, condition, timeout: float, what: str):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        from selenium.common.exceptions import StaleElementReferenceException

        try:  # an element re-rendered mid-check (widgets redraw) is simply checked again
            return WebDriverWait(self.driver, timeout, poll_frequency=0.5,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}") from None

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def open_notebook(self, name: str, timeout: float = 120) -> None:
        self.driver.get(f"{self.url}/lab/tree/{name}?token={self.token}&reset")
        self.wait(lambda d: self.css(".jp-NotebookPanel .jp-Cell"), timeout, f"{name} to open")
        end = time.monotonic() + 8  # JupyterLab may ask which kernel to start: take its proposal, as a user would
        while time.monotonic() < end and not self.accept_kernel_dialog():
            time.sleep(0.5)
        self.wait(lambda d: self.kernel_status() == "idle", timeout, "the kernel to start")

    def accept_kernel_dialog(self) -> bool:
        """Press Select in a "Select Kernel" dialog, if one is open."""
        for dialog in self.css(".jp-Dialog"):
            if "Select Kernel" in dialog.text:
                dialog.find_elements("css selector", ".jp-Dialog-button.jp-mod-accept")[0].click()
                return True
        return False

    def kernel_status(self) -> str:
        """'idle', 'busy', 'starting'... as JupyterLab's toolbar shows it (its kernel status indicator)."""
        return self.driver.execute_script("""
            const el = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
            return el ? (el.getAttribute('data-status') || 'unknown') : 'unknown';
        """)

    def menu(self, top: str, item: str) -> None:
        from selenium.webdriver.common.by import By

        bar = self.wait(lambda d: d.find_elements(
            By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')][.//*[normalize-space(text())='{top}']]"), 30,
            f"the {top} menu")
        bar[0].click()
        entry = self.wait(lambda d: d.find_elements(
            By.XPATH, f"//li[contains(@class,'lm-Menu-item')][.//*[normalize-space(text())='{item}']]"), 30,
            f"menu item {top} > {item}")
        entry[0].click()

    def code_cell_prompts(self) -> list[str]:
        return [e.text.strip() for e in self.css(".jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt")]

    def run_all(self, timeout: float) -> float:
        """Run > Run All Cells, wait until every code cell has run and the kernel is idle; returns seconds.
        Raises LabError naming the first cell that shows an error."""
        started = time.monotonic()
        self.menu("Run", "Run All Cells")

        def done(_):
            errors = self.css(".jp-NotebookPanel .jp-OutputArea-output[data-mime-type="
                              "'application/vnd.jupyter.stderr'] pre")
            tracebacks = [e for e in errors if "Traceback" in e.text or "Error" in e.text.split("\n")[0]]
            if tracebacks:
                raise LabError("a cell failed:\n" + tracebacks[0].text[-2500:])
            self.accept_kernel_dialog()
            prompts = self.code_cell_prompts()
            return (prompts and all(p not in ("[ ]:", "[*]:", "") for p in prompts)
                    and self.kernel_status() == "idle")

        try:
            self.wait(done, timeout, "all cells to run")
        except LabError as err:
            raise LabError(f"{err}; cell prompts {self.code_cell_prompts()}, kernel {self.kernel_status()}") from None
        return time.monotonic() - started

    def screenshot(self, path: str | Path, element=None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if element is not None:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
            time.sleep(0.5)
        self.driver.save_screenshot(str(path))
        return path


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="time notebooks in JupyterLab in headless Chromium")
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--out", default=str(REPO / "tests" / "output" / "browser"))
    parser.add_argument("--parameters", default="{}", help="JSON: {notebook stem: {name: value}} or {name: value}")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per notebook")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    given = json.loads(args.parameters)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="kadapter-lab-root-") as root:
        root = Path(root)
        for nb in args.notebooks:
            shutil.copy(nb, root / Path(nb).name)
            stem = Path(nb).stem
            params = given.get(stem, {} if any(isinstance(v, dict) for v in given.values()) else given)
            set_parameters(root / Path(nb).name, {"output_dir": str(root / "out" / stem), **params})
        with LabSession(root, log_path=out / "jupyterlab_timing.log") as lab:
            for nb in args.notebooks:
                name = Path(nb).name
                lab.open_notebook(name)
                try:
                    seconds = lab.run_all(args.timeout)
                    timings[name] = round(seconds, 1)
                except LabError as err:
                    timings[name] = f"failed: {err}"
                lab.screenshot(out / f"timing_{Path(nb).stem}.png")
                print(name, timings[name], flush=True)
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
