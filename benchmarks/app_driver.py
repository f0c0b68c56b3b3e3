"""Driving `python -m npvae.app` from outside, for its tests (tests/test_app*.py), its
benchmark (bench_app.py) and its screenshots (app_screenshots.py): a tiny model's settings,
the app as a real process (the URL it prints), JSON requests, waiting for a condition, and a
headless Chromium (selenium) started the way this closed-network machine needs."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A small model gmm on 300 of the embedded digits: an epoch takes a tenth of a second.
TINY = """name = "tiny"
model = "gmm"
latent_dim = 4
hidden_dims = [64]
decoder_dims = [64]
labeled_per_batch = 8
batch_size = 64
w_dir = 0.0
w_div = 0.0
w_cls = 12.0
"""


def tiny_config(folder: Path, num_samples: int | None = 300) -> Path:
    path = Path(folder) / "tiny.toml"
    path.write_text(TINY + (f"num_samples = {num_samples}\n" if num_samples else ""))
    return path


class AppProcess:
    """`python -m npvae.app ARGS` in its own process group; .url once it listens."""

    def __init__(self, *args, cwd=None, timeout: float = 120, wait: bool = True):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NPVAE_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "npvae.app", "--port", "0", *args],
                                     cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, start_new_session=True)
        self.url = self.base = None
        if wait:
            self.ready(timeout)

    def ready(self, timeout: float = 120) -> "AppProcess":
        """Wait for the line with the URL (wait=False starts several apps at once)."""
        if self.url is None:
            line = self.proc.stdout.readline()
            if not line.startswith("npvae.app: "):
                self.proc.wait(timeout)
                raise RuntimeError(f"the app did not start: {line}{self.proc.stderr.read()}")
            self.url = line.split()[1]
            self.base = self.url.split("?")[0]
        return self

    def get(self, path: str, token: str | None = None):
        return request(self.base + path.lstrip("/"), token=token)

    def post(self, path: str, body: dict | None = None, token: str | None = None):
        return request(self.base + path.lstrip("/"), body or {}, token=token)

    def kill(self) -> None:
        """SIGKILL the server only (not its training worker)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


def request(url: str, body: dict | None = None, token: str | None = None):
    """(status, parsed JSON or bytes) of a GET (body None) or a JSON POST."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if token:
        req.add_header("X-Token", token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            status, raw, kind = res.status, res.read(), res.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, (json.loads(raw) if "json" in kind else raw)


def wait_for(condition, timeout: float = 120, every: float = 0.05, what: str = "condition"):
    """condition()'s first truthy value, polling; AssertionError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def labels_csv(folder) -> list[tuple[int, int, str]]:
    """A run folder's labels.csv as (index, label, source) rows ([] before the first)."""
    path = Path(folder) / "labels.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [(int(r["index"]), int(r["label"]), r["source"]) for r in csv.DictReader(fh)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")


def browser_missing() -> str | None:
    """Why no browser can be driven here (selenium, chromium or chromedriver missing), or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (CHROMIUM and CHROMEDRIVER):
        return ("chromium and chromedriver are not installed (apt-get install chromium "
                "chromium-driver)")
    return None


def start_chromium(profile, width: int = 1500, height: int = 950):
    """A headless Chromium with a fresh profile folder; RuntimeError saying why it failed."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--window-size={width},{height}",
                                  f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except WebDriverException as err:
        raise RuntimeError(f"chromium did not start: {str(err.msg).splitlines()[0]}") from None
    driver.set_page_load_timeout(60)
    return driver
