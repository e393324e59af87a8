"""A headless chromium for the browser tests, started by the test that uses it.

``make test`` installs Debian's ``chromium`` when it is missing and ``puppeteer-core`` with
the other npm packages. Without either a browser test is skipped on a developer's machine
but fails under CI (``CI`` set): CI must run them.

The test starts chromium itself, through ``spawn`` (a process group of its own, killed when
the test ends, checked at the end of the session), and the Node script connects to it over
its remote debugging port. Launched by puppeteer instead, chromium would run in a process
group of puppeteer's making, out of the suite's reach if the script were killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NODE_MODULES, kill_group, spawn

FLAGS = [
    "--headless=new",
    "--no-sandbox",  # as root, in a container
    "--disable-dev-shm-usage",  # a container's /dev/shm is small
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # chromium picks a free one: see DevToolsActivePort
]


def missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        missing("chromium is not installed (make test installs it: apt-get install chromium)")
    if not (NODE_MODULES / "puppeteer-core").is_dir():
        missing("puppeteer-core is not installed (make test runs npm ci)")
    return str(binary)


class Chromium:
    """A headless chromium with a fresh profile; ``url`` is its remote debugging endpoint
    (``http://127.0.0.1:PORT``, what puppeteer.connect takes as ``browserURL``)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.profile = workdir / "profile"
        self.log_path = workdir / "chromium.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> None:
        self.profile.mkdir(parents=True, exist_ok=True)
        command = [chromium_binary(), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        with self.log_path.open("wb") as log:
            self.process = spawn(command, stdout=log, stderr=subprocess.STDOUT)
        # Chromium writes its port, then the browser target's path, once it listens.
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            lines = active.read_text().split() if active.exists() else []
            if len(lines) >= 2:
                self.url = f"http://127.0.0.1:{int(lines[0])}"
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chromium did not start in {timeout} s:\n{self.log()}")
            time.sleep(0.05)  # polling a starting process; not test synchronisation

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process, grace=0)  # the profile is thrown away anyway
        self.process = None


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    browser = Chromium(tmp_path / "chromium")
    browser.start()
    yield browser
    browser.stop()
