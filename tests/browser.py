"""Headless Chromium from Debian (`.ci/chromium.sh`) driven by Playwright for Python.

Consumes: `/usr/bin/chromium` (or `TASKTIDE_CHROMIUM`); Playwright's own browser download is never used.
Emits: `chromium()`, a context manager yielding a launched `Browser` that reaches only loopback servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def executable() -> str:
    return os.environ.get("TASKTIDE_CHROMIUM", "/usr/bin/chromium")


@contextmanager
def chromium() -> Iterator[Browser]:
    path = executable()
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is missing: run `bash .ci/chromium.sh` (part of `make services`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
