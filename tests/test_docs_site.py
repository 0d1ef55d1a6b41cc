"""The built docs site in a real browser, without network: formulas are typeset by the MathJax
copy inside the site (docs/_hooks/mathjax_local.py), not left as raw LaTeX.

The site is built with mkdocs, served on 127.0.0.1 and opened in the system's headless Chromium,
whose every other address fails to resolve (skipped, saying so, only when no Chromium is
installed).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import chromium, free_port, require_browser, server

ROOT = Path(__file__).resolve().parents[1]


def _build_site(site: Path) -> None:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings") if not importlib.util.find_spec(m)]
    if missing:
        message = f"the docs extra is not installed ({', '.join(missing)})"
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the docs, but {message}")
        pytest.skip(message)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_formulas_are_typeset_offline(tmp_path: Path) -> None:
    require_browser()
    site = tmp_path / "site"
    _build_site(site)
    assert (site / "assets" / "mathjax" / "tex-mml-chtml.js").is_file()
    html = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert "unpkg.com" not in html and "cdn.jsdelivr" not in html
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(site)]
    with (
        server(argv, f"{base}/concepts/", tmp_path / "http.log"),
        chromium(tmp_path / "profile", offline=True) as driver,
    ):
        driver.get(f"{base}/concepts/")
        deadline = time.monotonic() + 60
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            state = driver.execute_script(
                """
                const text = document.querySelector("article").innerText;
                return {
                  typeset: document.querySelectorAll("mjx-container").length,
                  arithmatex: document.querySelectorAll(".arithmatex").length,
                  raw: text.includes("\\\\(") || text.includes("\\\\["),
                  errors: document.querySelectorAll("mjx-merror").length,
                  fonts: [...document.fonts].filter(
                      f => f.family.includes("MJX") && f.status === "loaded").length,
                  resources: performance.getEntriesByType("resource").map(e => e.name),
                };
                """
            )
            if state["typeset"] and not state["raw"] and state["fonts"]:
                break
            time.sleep(0.25)
        driver.save_screenshot(str(tmp_path / "concepts.png"))
    assert state["arithmatex"], "the concepts page has no formulas to typeset"
    assert state["typeset"] >= state["arithmatex"], state  # every formula became MathJax output
    assert not state["raw"], "raw \\( or \\[ delimiters remain in the page text"
    assert state["errors"] == 0, "MathJax reported errors in formulas"
    assert state["fonts"], "MathJax's web fonts did not load from the site"
    outside = [url for url in state["resources"] if not url.startswith(base)]  # type: ignore[union-attr]
    assert not outside, f"the page asked for resources outside the site: {outside}"
