"""Headless Chromium for the real-browser tests: Debian's binary, driven by Playwright.

Playwright's own browser download cannot work here, so it launches the system Chromium
(``.ci/run`` installs it). Without Chromium or Playwright the tests are skipped on a developer's
machine and fail on CI (``CI`` set), so that a CI run cannot pass without having looked.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it with apt-get)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


@contextmanager
def browser_page(offline: bool = False) -> Iterator:
    """A page of a fresh headless Chromium; ``offline`` refuses every request that is not a local file."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed (it is in the dev extra)")
        pytest.skip("playwright is not installed")
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            if offline:
                page.route(
                    "**/*",
                    lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort(),
                )
            page.errors = errors
            yield page
        finally:
            browser.close()
