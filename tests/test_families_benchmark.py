"""benchmarks/families.py --quick: the family-table pipeline runs end to end and fills the page."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import families  # noqa: E402


@pytest.mark.usefixtures("one_thread")
def test_quick_run_writes_json_and_the_page_rows(tmp_path: Path) -> None:
    out, page = tmp_path / "f.json", tmp_path / "families.md"
    page.write_text(
        "<!-- family-table -->\nold\n<!-- /family-table -->\n"
        "<!-- family-row:planar -->\nold\n<!-- /family-row:planar -->\n"
        "<!-- family-row:ladder -->\nold\n<!-- /family-row:ladder -->\n"
    )
    rows = ["vae", "planar", "ae", "ladder"]
    results = families.main(["--quick", "--rows", *rows, "--out", str(out), "--page", str(page)])
    stored = json.loads(out.read_text())
    assert stored == json.loads(json.dumps(results))
    assert list(stored["rows"]) == rows
    vae = stored["rows"]["vae"]["median"]
    # an almost untrained model on binary 28x28 images: finite figures, IW-NLL <= -ELBO + noise
    assert 100 < vae["nll"] < vae["neg_elbo"] + 20 and vae["recon"] > 0
    ae = stored["rows"]["ae"]["median"]
    assert ae["neg_elbo"] is None and ae["nll"] is None and ae["recon"] > 0
    ladder = stored["rows"]["ladder"]
    assert ("skipped" in ladder) == ("ladder" not in families.pyvae.list_models())
    text = page.read_text()
    assert "old" not in text and "| planar flow, 4 steps |" in text
    assert text.count("| family | config |") == 3  # the table and the two rows


def test_every_row_builds_or_says_why_not() -> None:
    for key, row in families.ROWS.items():
        if families.missing(row) is None:
            families.pyvae.build(row.config)  # no typo in any config
        else:
            assert row.requires, key
