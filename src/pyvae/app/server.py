"""``pyvae playground``: the command's arguments and the start of the Streamlit server.

Streamlit is imported only by the page script that the server runs, never here at import time,
so ``pyvae`` and its CLI work without the ``app`` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["PAGE", "add_parser", "serve", "streamlit_command"]

#: The Streamlit script of the playground (alone in its folder: Streamlit puts the script's folder
#: first on ``sys.path``).
PAGE = Path(__file__).resolve().parent / "_script" / "page.py"
#: The environment variable through which the page learns its source (besides its argv).
SOURCE_VARIABLE = "PYVAE_PLAYGROUND_SOURCE"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``playground`` subcommand to the ``pyvae`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "playground",
        help="explore a run's model in the browser (pip install 'pyvae[app]')",
        description="Serve the interactive latent playground of a run folder or checkpoint on "
        "a local web server (Streamlit) and print its URL: latent sliders, reconstructions, "
        "interpolations, the latent map and the model card. It only reads the files.",
    )
    p.add_argument("run", help="a run folder or a checkpoint (.safetensors)")
    p.add_argument("--port", type=_port, default=8501, help="default %(default)s")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to bind; default %(default)s (this machine only; 0.0.0.0 exposes the "
        "app to the network)",
    )
    p.set_defaults(func=_cmd_playground)
    return p


def _cmd_playground(args: argparse.Namespace) -> int:
    return serve(args.run, host=args.host, port=args.port)


def streamlit_command(source: str | os.PathLike[str], *, host: str, port: int) -> list[str]:
    """The command line that serves the playground of ``source`` (what :func:`serve` runs)."""
    flags = {
        "server.address": host,
        "server.port": str(port),
        "server.headless": "true",  # print the URL; open no browser, ask no e-mail
        "browser.gatherUsageStats": "false",  # nothing leaves the machine
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        # A full garbage collection after every rerun holds the GIL for 100-300 ms with torch
        # loaded, so the redraw waits for it; Python's own collector still runs as usual.
        "runner.postScriptGC": "false",
        "server.maxUploadSize": "5",  # MB; uploads are single small images
        "global.developmentMode": "false",
        "client.toolbarMode": "minimal",
    }
    argv = [sys.executable, "-m", "streamlit", "run", str(PAGE)]
    for key, value in flags.items():
        argv += [f"--{key}", value]
    return [*argv, "--", str(Path(source).resolve())]


def serve(source: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8501) -> int:
    """Serve the playground of a run folder or checkpoint until interrupted.

    On POSIX the process becomes the Streamlit server (``exec``), so stopping it leaves nothing
    behind; elsewhere the server runs as a child that is stopped with it.

    Args:
        source: a run folder (holding ``model.safetensors``) or a checkpoint file.
        host: the address to bind (default: this machine only).
        port: the TCP port.

    Returns:
        The server's exit status (only where it runs as a child).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ImportError: Streamlit is not installed (``pip install 'pyvae[app]'``).
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such run folder or checkpoint (expected a folder written by `pyvae "
            f"train`/`pyvae demo`, or a .safetensors file written by model.save)"
        )
    if importlib.util.find_spec("streamlit") is None:
        raise ImportError("the playground needs Streamlit: pip install 'pyvae[app]'")
    argv = streamlit_command(path, host=host, port=port)
    shown = f"[{host}]" if ":" in host else host
    print(f"pyvae playground: serving {path} at http://{shown}:{port} (Ctrl+C stops it)")
    sys.stdout.flush()
    sys.stderr.flush()
    env = {**os.environ, SOURCE_VARIABLE: argv[-1]}
    if os.name == "posix":
        os.execve(sys.executable, argv, env)
    child = subprocess.Popen(argv, env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        return child.wait()
