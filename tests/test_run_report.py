"""pyvae.run_report: the KL chart, the HTML report from its template, and the package data."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import matplotlib
import pytest
import torch

import pyvae
from pyvae import viz
from pyvae.run_report import CAPTIONS, plot_kl_per_dimension, write_figures, write_report

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


HISTORY = [{"epoch": 1, "train_neg_elbo": 50.0, "train_recon": 45.0, "train_kl": 5.0}]
FIGURES = [
    "curves.png",
    "reconstructions.png",
    "samples.png",
    "latent.png",
    "manifold.png",
    "interpolation.png",
    "kl_per_dim.png",
]


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[dict[str, object]]:
    """Record the keyword arguments of each call of ``viz.<name>`` (the call still runs)."""
    calls: list[dict[str, object]] = []
    original = getattr(viz, name)

    def spy(*args: object, **kwargs: object) -> object:
        calls.append({"args": args, **kwargs})
        return original(*args, **kwargs)

    monkeypatch.setattr(viz, name, spy)
    return calls


def test_a_conditional_model_gets_every_figure_drawn_with_its_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = pyvae.build(
        "mlp", input_shape=(1, 8, 8), latent_dim=2, hidden_dims=[8], num_classes=3
    ).eval()
    images = torch.rand(12, 1, 8, 8)
    labels = torch.tensor([2, 0, 1, 2, 0, 2, 1, 1, 2, 0, 2, 1])  # most common: 2
    recon = _spy(monkeypatch, "plot_reconstructions")
    samples = _spy(monkeypatch, "plot_samples")
    manifold = _spy(monkeypatch, "plot_manifold")
    interpolation = _spy(monkeypatch, "plot_interpolation")
    names = ["zero", "one", "two"]
    files = write_figures(
        tmp_path, model, HISTORY, images, labels, classes=names, kl_per_dim=[1.0, 0.5]
    )
    assert files == FIGURES
    assert all((tmp_path / f).stat().st_size > 1000 for f in files)
    assert torch.equal(recon[0]["y"], labels)  # type: ignore[arg-type]
    assert samples[0]["y"] == [0, 1, 2] and samples[0]["class_names"] == names
    assert manifold[0]["y"] == 2
    (call,) = interpolation
    pairs, classes = call["args"][1], call["y"]  # type: ignore[index]
    # the first two images of each class, encoded and decoded with that class
    assert classes == [0, 1, 2]
    for (x0, x1), c, (a, b) in zip(pairs, classes, [(1, 4), (2, 6), (0, 3)], strict=True):
        assert torch.equal(x0, images[a]) and torch.equal(x1, images[b]) and labels[a] == c
    page = write_report(tmp_path / "report.html", run_record() | {"model": model.config}, files)
    text = page.read_text()
    assert all(f'src="{f}"' in text for f in files)
    assert "One row per class" in text and "of the same class" in text


def test_an_unconditional_model_still_gets_its_figures_without_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = pyvae.build("mlp", input_shape=(1, 8, 8), latent_dim=1, hidden_dims=[8]).eval()
    recon = _spy(monkeypatch, "plot_reconstructions")
    labels = torch.arange(10)
    files = write_figures(tmp_path, model, HISTORY, torch.rand(10, 1, 8, 8), labels)
    assert files == FIGURES[:-1]
    assert recon[0]["y"] is None
    page = write_report(tmp_path / "report.html", run_record() | {"model": model.config}, files)
    assert "One row per class" not in page.read_text()
    assert CAPTIONS["samples.png"] in page.read_text()


def test_a_conditional_model_without_two_images_of_a_class_skips_interpolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many classes: the samples show the first 20 (and say so); a 1-D latent space gets its
    decoded line for the most common class (the smallest on ties); no class has two images,
    so there is no interpolation."""
    torch.manual_seed(0)
    model = pyvae.build(
        "mlp", input_shape=(1, 8, 8), latent_dim=1, hidden_dims=[8], num_classes=25
    ).eval()
    samples = _spy(monkeypatch, "plot_samples")
    line = _spy(monkeypatch, "plot_traversal")
    labels = torch.tensor([24, 3])
    files = write_figures(tmp_path, model, HISTORY, torch.rand(2, 1, 8, 8), labels)
    assert files == FIGURES[:-2]
    assert samples[0]["y"] == list(range(20)) and "first 20 of 25 classes" in str(
        samples[0]["title"]
    )
    assert line[0]["y"] == 3 and str(line[0]["title"]).endswith("y = 3")


@pytest.mark.parametrize("validate", [True, False])
def test_labels_outside_a_conditional_models_classes_are_refused_by_name(
    tmp_path: Path, validate: bool
) -> None:
    """The figures count and index by label: the range is checked even with the model's value
    checks off (before, a negative label failed inside torch.bincount)."""
    model = pyvae.build(
        "mlp", input_shape=(1, 8, 8), latent_dim=2, hidden_dims=[8], num_classes=3
    ).eval()
    model.validate_args = validate
    images = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match=r"labels: .*num_classes=3 .*\[0, 2\], got .* -1 to 2"):
        write_figures(tmp_path, model, HISTORY, images, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(ValueError, match=r"labels: expected integer labels of shape \(4,\)"):
        write_figures(tmp_path, model, HISTORY, images, torch.zeros(4))
    assert not list(tmp_path.iterdir())  # refused before drawing anything


def test_a_conditional_wrapper_reads_its_backbones_config(tmp_path: Path) -> None:
    """The denoising model records its backbone's whole config: the report still sees the labels
    and the latent size there."""
    model = pyvae.build(
        "denoising", input_shape=(1, 8, 8), latent_dim=3, hidden_dims=[8], num_classes=3
    )
    assert "num_classes" not in model.config and model.config["backbone"]["num_classes"] == 3
    page = write_report(
        tmp_path / "report.html", run_record() | {"model": model.config}, ["samples.png"]
    )
    assert "One row per class" in page.read_text()
