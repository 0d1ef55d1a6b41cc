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


def test_every_entry_builds() -> None:
    for key, entry in reproduce.ENTRIES.items():
        if reproduce._missing(entry) is None:
            reproduce.pyvae.build(entry.config)  # no typo in any config
        else:
            assert entry.requires, key
