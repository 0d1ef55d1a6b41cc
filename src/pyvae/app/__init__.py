"""The interactive latent playground (``pyvae playground RUN``), a local Streamlit web app.

:mod:`pyvae.app.core` holds everything the page computes (plain torch and numpy);
:mod:`pyvae.app.server` starts the server. Streamlit (the ``app`` extra) is imported only by the
page script the server runs, so importing this package never needs it.
"""

from __future__ import annotations

from pyvae.app.core import Playground, PlaygroundError
from pyvae.app.server import add_parser, serve

__all__ = ["Playground", "PlaygroundError", "add_parser", "serve"]
