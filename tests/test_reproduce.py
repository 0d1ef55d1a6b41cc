"""benchmarks/reproduce.py --quick: the paper-protocol pipeline runs end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import reproduce  # noqa: E402


@pytest.mark.usefixtures("one_thread")
def test_quick_run_writes_json_and_the_docs_page(tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "reproducing.md"
    results = reproduce.main(
        ["--quick", "--entries", "vae_burda", "iaf", "--out", str(out), "--page", str(page)]
    )
    stored = json.loads(out.read_text())
    assert stored == json.loads(json.dumps(results))
    row = stored["entries"]["vae_burda"]
    assert row["epochs"] == 1 and row["k"] == 20 and row["steps"] == 20  # 2000 images / 100
    # an untrained-ish model on binary MNIST: finite, NLL below the -ELBO, far from 0
    assert 100 < row["nll"] <= row["neg_elbo"] + 3 * row["nll_stderr"]
    assert row["published_nll"] == 86.76
    text = page.read_text()
    assert "| VAE (Burda et al. 2016 architecture) | 1 |" in text and "86.76" in text
    iaf = stored["entries"]["iaf"]
    assert ("skipped" in iaf) == ("iaf" not in reproduce.pyvae.list_posteriors())


@pytest.mark.usefixtures("one_thread")
def test_separate_runs_merge_into_one_page_with_paired_orderings(tmp_path: Path) -> None:
    """Rows run as separate processes (one JSON each) merge into one page; the paired
    differences are computed over the same test images and agree with the per-image NLLs."""
    parts = []
    for key in ("vae_burda", "iwae5_burda"):
        parts.append(tmp_path / f"{key}.json")
        reproduce.main(["--quick", "--entries", key, "--out", str(parts[-1])])
    out, page = tmp_path / "all.json", tmp_path / "reproducing.md"
    merged = reproduce.main(
        [
            "--merge",
            *map(str, parts),
            "--out",
            str(out),
            "--page",
            str(page),
        ]
    )
    vae, iwae = (merged["entries"][k] for k in ("vae_burda", "iwae5_burda"))
    assert vae["subset"] == iwae["subset"] and len(vae["subset"]) == 50  # same seeded images
    (ordering,) = merged["orderings"]
    per_image = [
        a - b
        for a, b in zip(
            iwae["train_curve"][-1]["nll_per_image"],
            vae["train_curve"][-1]["nll_per_image"],
            strict=True,
        )
    ]
    assert ordering["difference"] == pytest.approx(sum(per_image) / len(per_image), abs=1e-3)
    assert ordering["images"] == 50 and ordering["stderr"] > 0 and ordering["epoch"] == 1
    text = page.read_text()
    assert "IWAE k=5 < VAE" in text and "--entries iwae5_burda --epochs 1" in text
    # the difference estimator: the whole test set's -ELBO minus the subset's mean gap
    assert vae["nll"] == pytest.approx(vae["neg_elbo"] - vae["gap"], rel=1e-6)


def test_every_entry_builds() -> None:
    for key, entry in reproduce.ENTRIES.items():
        if reproduce._missing(entry) is None:
            reproduce.pyvae.build(entry.config)  # no typo in any config
        else:
            assert entry.requires, key
