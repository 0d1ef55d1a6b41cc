"""An MkDocs hook: render the Sphinx roles of pyvae's docstrings as plain code.

The docstrings are read in source and in ``help()`` too, where ``:class:`pyvae.BaseVAE``` is the
familiar notation; on the site mkdocstrings renders the role name literally (``:class:`` before the
code). This hook drops the role name and a leading ``~`` (Sphinx's "show the last part only").
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc|obj):(?=<code)")
_TILDE = re.compile(r"(<code[^>]*>)~(?:[\w]+\.)*(\w+)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _TILDE.sub(r"\1\2", _ROLE.sub("", html))
