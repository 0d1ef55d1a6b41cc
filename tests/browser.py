"""Headless Chromium for the browser tests: the system's browser (Debian's ``chromium`` and
``chromium-driver``; nothing is downloaded) driven through Selenium, and a server process that is
always stopped, with its whole process group.

Used by test_app_browser.py (the playground) and test_docs_site.py (the built docs site).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Where the network is not wanted: every host name fails to resolve except the loopback's.
OFFLINE_FLAGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--proxy-server=127.0.0.1:9",  # discard port: any request through a proxy fails at once
    "--proxy-bypass-list=127.0.0.1;localhost",  # only the loopback goes direct
]


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables, or None."""
    browser = next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None
    )
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver"
        if Path("/usr/lib/chromium/chromedriver").exists()
        else None
    )
    return (browser, driver) if browser and driver else None


def require_browser() -> tuple[str, str]:
    """The browser and its driver; the test is skipped, saying why, when there is none."""
    found = find_browser()
    if found is None:
        pytest.skip(
            "no headless Chromium on this machine (apt-get install chromium chromium-driver; "
            ".ci/run installs them and this test runs there)"
        )
    return found  # type: ignore[return-value]


@contextlib.contextmanager
def chromium(
    profile: Path, *, offline: bool = False, size: tuple[int, int] = (1280, 900)
) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile in ``profile``; quit on exit, and its
    chromedriver checked to have stopped."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = require_browser()
    options = Options()
    options.binary_location = browser
    for flag in [*FLAGS, *(OFFLINE_FLAGS if offline else []), f"--window-size={size[0]},{size[1]}"]:
        options.add_argument(flag)
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=driver_path, log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        process = getattr(service, "process", None)
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def free_port() -> int:
    """A TCP port that nothing listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(
    argv: Sequence[str], health_url: str, log: Path, *, timeout: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` in its own process group, wait until ``health_url`` answers, and on exit
    stop the whole group (SIGTERM, then SIGKILL) and check that nothing of it is left."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"the server exited with status {process.returncode}:\n{log.read_text()}"
                )
            try:
                with urllib.request.urlopen(health_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the server did not answer in {timeout} s:\n{log.read_text()}"
                )
            time.sleep(0.25)
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session=True`` and everything in its group."""
    pgid = process.pid
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the group's other members, if any, go too
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    raise AssertionError(f"processes of group {pgid} were still running after the test")
