"""pyvae.run_report: the KL chart, the HTML report from its template, and the package data."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import matplotlib
import pytest

from pyvae.run_report import CAPTIONS, plot_kl_per_dimension, write_report

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


def test_the_template_ships_as_package_data() -> None:
    text = (ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11+; a regex suffices
    section = text.split("[tool.setuptools.package-data]", 1)[1]
    patterns = re.findall(r'"([^"]+)"', re.search(r"^pyvae = \[(.*?)\]", section, re.M)[1])
    template = "templates/report.html"
    assert (ROOT / "src" / "pyvae" / template).is_file()
    assert any(fnmatch.fnmatch(template, p) for p in patterns), patterns


def run_record(**evaluation: object) -> dict[str, object]:
    return {
        "model": {"name": "<script>alert(1)</script>", "latent_dim": 3},
        "data": {"name": "digits", "note": "a & b"},
        "training": {"epochs": 1},
        "metrics": {"eval_neg_elbo": 10.0, "eval_nll": 9.5, "eval_nll_stderr": 0.25, "nll_k": 5},
        "evaluation": {
            "nll": 9.5,
            "nll_stderr": 0.25,
            "active_units": 2,
            "threshold": 0.01,
            "latent_variance": [1.0, 0.5, 0.0],
            "notes": ["a <note>"],
            **evaluation,
        },
        "command": "train",
    }


def test_report_escapes_and_shows_diagnostics(tmp_path: Path) -> None:
    files = ["model.safetensors", "curves.png", "kl_per_dim.png"]
    page = write_report(tmp_path / "report.html", run_record(), files, folder="runs/x").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a &amp; b" in page and "a &lt;note&gt;" in page
    assert "9.50 ± 0.25 nats" in page and "2 of 3" in page
    assert 'src="kl_per_dim.png"' in page and 'src="curves.png"' in page
    assert 'src="samples.png"' not in page  # only the figures that exist
    assert 'pyvae.load("runs/x")' in page and "$" not in page.replace("$$", "")
    assert "mutual information I(x; z)</th><td>not defined" in page
    assert set(CAPTIONS) >= {"curves.png", "samples.png"}


def test_kl_chart_bars_and_bad_input() -> None:
    fig = plot_kl_per_dimension([1.0, 0.0, 2.0], active=[True, False, True])
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == [1.0, 0.0, 2.0]
    assert "2 of 3 active" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="active"):
        plot_kl_per_dimension([1.0, 2.0], active=[True])
    with pytest.raises(ValueError, match="kl_per_dim"):
        plot_kl_per_dimension([])
