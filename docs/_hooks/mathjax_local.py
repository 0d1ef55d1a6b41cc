"""An MkDocs hook: put MathJax into the built site, so formulas render without internet.

The site used to load MathJax from a CDN, and a site opened offline showed raw LaTeX. MathJax
3.2 comes from the ``django-static-mathjax`` package of the docs extra (a copy of MathJax's
``es5`` build; despite the name it needs no Django); after each build, the combined
``tex-mml-chtml.js`` and the parts it loads (fonts, TeX extensions for ``autoload``,
accessibility and menu components) are copied to ``site/assets/mathjax/``, which
``extra_javascript`` names. The speech-rule engine (``sre/``, only for the menu's speech
options) and the SVG builds are left out.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

TARGET = Path("assets") / "mathjax"
PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "a11y", "ui", "adaptors")


def _source() -> Path:
    try:
        import mathjax  # the django-static-mathjax distribution
    except ImportError:
        raise PluginError(
            "the docs bundle MathJax from the docs extra: pip install -e '.[docs]' "
            "(django-static-mathjax)"
        ) from None
    es5 = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise PluginError(f"no MathJax es5 build in {es5}: reinstall django-static-mathjax")
    return es5


def on_post_build(config: Any, **kwargs: Any) -> None:
    es5 = _source()
    target = Path(config["site_dir"]) / TARGET
    if target.exists():
        shutil.rmtree(target)
    for part in PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, target / part)
        elif src.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / part)
