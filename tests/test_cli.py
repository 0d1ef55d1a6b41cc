"""The ``pyvae`` command end to end on tiny settings, and its error messages."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import pyvae
from pyvae.cli import main

matplotlib.use("Agg")

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
RUN_FILES = {
    "model.safetensors",
    "history.csv",
    "history.json",
    "metrics.json",
    "run.json",
    "curves.png",
    "reconstructions.png",
    "samples.png",
    "latent.png",
    "manifold.png",
    "interpolation.png",
    "report.html",
    "evaluation.json",
    "kl_per_dim.png",
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``pyvae demo`` for 2 epochs on 400 training and 100 evaluation digits, progress bar on."""
    out = tmp_path_factory.mktemp("cli") / "demo"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(
            [
                "demo",
                "--out",
                str(out),
                "--epochs",
                "2",
                "--limit",
                "400",
                "--eval-limit",
                "100",
                "--k",
                "4",
            ]
        )
    assert code == 0, err.getvalue()
    return out, err.getvalue()


def test_demo_writes_every_file_of_the_run_folder(demo_run: tuple[Path, str]) -> None:
    out, stderr = demo_run
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert "epoch 2/2" in stderr and "recon=" in stderr and "kl=" in stderr  # the progress bar
    for name in RUN_FILES:
        if name.endswith(".png"):
            with Image.open(out / name) as im:
                assert im.size[0] > 200 and im.size[1] > 100, name


def test_demo_records_curves_metrics_and_config(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    history = json.loads((out / "history.json").read_text())
    assert history[1]["step"] == 2 * (400 // 32)  # 400 images, batches of 32, last one dropped
    for row in history:
        assert row["train_neg_elbo"] == pytest.approx(row["train_recon"] + row["train_kl"])
        assert row["eval_neg_elbo"] == pytest.approx(row["eval_recon"] + row["eval_kl"])
    run = json.loads((out / "run.json").read_text())
    metrics = run["metrics"]
    assert (metrics["n_train"], metrics["n_eval"], metrics["nll_k"]) == (400, 100, 4)
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert metrics["eval_neg_elbo"] == evaluation["neg_elbo"] == run["evaluation"]["neg_elbo"]
    assert metrics["eval_nll"] == evaluation["nll"] and evaluation["k"] == 4
    assert len(evaluation["kl_per_dim"]) == 2 and evaluation["nll_stderr"] > 0
    assert [f"kl_dim_{d}" in history[-1] for d in (0, 1)] == [True, True]
    assert 0 < metrics["eval_nll"] < 100  # nats per 8x8 image
    assert run["model"]["name"] == "conv" and run["model"]["input_shape"] == [1, 8, 8]
    assert run["data"]["name"] == "digits"
    model = pyvae.load(out)
    assert model.config == run["model"]
    report = (out / "report.html").read_text()
    for name in RUN_FILES - {"report.html"}:
        assert f'"{name}"' in report, name  # every figure shown, every file linked
    assert f"{metrics['eval_nll']:.2f} nats" in report


def test_eval_reports_elbo_and_nll(
    demo_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = demo_run
    assert main(["eval", str(out), "--k", "8", "--limit", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["n_images"], result["k"], result["data"]) == (50, 8, "digits")
    assert result["neg_elbo"] == pytest.approx(result["recon"] + result["kl"])
    # the importance-sampled bound is tighter than the ELBO (up to Monte Carlo noise)
    assert result["nll"] < result["neg_elbo"] + 0.5
    saved = out / "evaluation-k8.json"
    assert json.loads(saved.read_text()) == result
    saved.unlink()
    assert result["nll_stderr"] > 0 and 0 < result["ess"] <= 1 and result["active_units"] <= 2
    assert (
        main(["eval", str(out / "model.safetensors"), "--k", "2", "--limit", "10", "--no-save"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "NLL (k=2)" in printed and "active units" in printed and "KL per dimension" in printed
    assert not (out / "evaluation-k2.json").exists()


def test_sample_writes_a_grid(demo_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo_run
    assert main(["sample", str(out), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (4 * 9 + 1, 4 * 9 + 1)  # 4 x 4 tiles of 8 x 8, 1-pixel padding
    assert main(["sample", str(out), "-n", "9"]) == 0
    assert (out / "samples_9.png").is_file()
    (out / "samples_9.png").unlink()


def test_train_on_the_mnist_test_set_folder(tmp_path: Path) -> None:
    """``--data mnist`` on a folder holding only the test-set files; a 3-D latent space gives
    the PCA and t-SNE panels."""
    out = tmp_path / "mnist"
    code = main(
        [
            "train",
            "--model",
            "mlp",
            "--data",
            "mnist",
            "--data-dir",
            str(MNIST_DIR),
            "--latent-dim",
            "3",
            "--epochs",
            "1",
            "--limit",
            "256",
            "--eval-limit",
            "60",
            "--batch-size",
            "64",
            "--model-arg",
            "hidden_dims=[32]",
            "--likelihood",
            '{"name": "bernoulli"}',
            "--k",
            "2",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["hidden_dims"] == [32] and run["model"]["latent_dim"] == 3
    assert "0-7999 train" in run["data"]["note"]
    assert run["metrics"]["n_eval"] == 60
    assert (out / "latent.png").is_file() and (out / "report.html").is_file()


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_bad_arguments_give_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _error(["train", "--epochs", "0"], capsys)
    assert code == 2 and "--epochs: expected a positive integer, got '0'" in err
    code, err = _error(["train", "--data", "cifar"], capsys)
    assert code == 2 and "invalid choice: 'cifar'" in err
    code, err = _error(["train", "--likelihood", "{bad json"], capsys)
    assert code == 2 and "invalid JSON" in err
    code, err = _error(["train", "--model-arg", "noequals"], capsys)
    assert code == 2 and "expected KEY=VALUE" in err
    code, err = _error([], capsys)
    assert code == 2 and "COMMAND" in err
    code, err = _error(
        [
            "train",
            "--model",
            "convv",
            "--epochs",
            "1",
            "--limit",
            "8",
            "--out",
            str(tmp_path / "x"),
        ],
        capsys,
    )
    assert code == 1 and "Unknown model 'convv'. Did you mean 'conv'?" in err
    code, err = _error(
        ["train", "--model-arg", "colour=1", "--epochs", "1", "--out", str(tmp_path / "x")], capsys
    )
    assert code == 1 and "unknown argument 'colour'" in err
    code, err = _error(["train", "--data", "mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and "no mnist files in" in err and "--download" in err
    code, err = _error(["train", "--likelihood", "gaussian", "--device", "tpu"], capsys)
    assert code == 2 and "--device" in err
    assert not (tmp_path / "x").exists()


def test_bad_checkpoints_give_one_clear_line(
    demo_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _error(["eval", str(tmp_path / "missing")], capsys)
    assert code == 1 and "checkpoint not found" in err
    good = (demo_run[0] / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    code, err = _error(["sample", str(tmp_path / "cut.safetensors")], capsys)
    assert code == 1 and "cut.safetensors: not a readable safetensors file" in err
    code, err = _error(["sample", str(demo_run[0]), "--out", str(tmp_path / "s.txt")], capsys)
    assert code == 2 and "expected a .png or .jpg file" in err
    code, err = _error(
        ["eval", str(demo_run[0]), "--data", "mnist", "--data-dir", str(MNIST_DIR), "--limit", "5"],
        capsys,
    )
    assert code == 2 and "expects inputs of shape (1, 8, 8)" in err


def test_python_dash_m_and_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pyvae", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == f"pyvae {pyvae.__version__}"


def test_same_seed_same_run(tmp_path: Path) -> None:
    args = [
        "train",
        "--model",
        "mlp",
        "--model-arg",
        "hidden_dims=[16]",
        "--epochs",
        "1",
        "--limit",
        "128",
        "--eval-limit",
        "32",
        "--k",
        "2",
        "--no-progress",
        "--no-figures",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = pyvae.load(tmp_path / "a"), pyvae.load(tmp_path / "b")
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    metrics = [json.loads((tmp_path / r / "metrics.json").read_text()) for r in "ab"]
    assert metrics[0]["eval_nll"] == metrics[1]["eval_nll"]


def test_without_tqdm_training_still_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    code = main(
        [
            "train",
            "--model",
            "mlp",
            "--model-arg",
            "hidden_dims=[8]",
            "--epochs",
            "1",
            "--limit",
            "64",
            "--eval-limit",
            "16",
            "--k",
            "1",
            "--no-figures",
            "--out",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "pip install 'pyvae[viz]'" in err and "epoch   1/1: train -ELBO" in err


def test_threads_apply_only_while_training(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    assert (
        main(
            [
                "train",
                "--model",
                "mlp",
                "--model-arg",
                "hidden_dims=[8]",
                "--epochs",
                "1",
                "--limit",
                "64",
                "--eval-limit",
                "16",
                "--k",
                "1",
                "--no-figures",
                "--no-progress",
                "--threads",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert torch.get_num_threads() == before
    assert json.loads((tmp_path / "run.json").read_text())["training"]["threads"] == 1


# -- run folders: checked first, written aside, moved into place ---------------------------------

TINY_RUN = [
    "train",
    "--model",
    "mlp",
    "--model-arg",
    "hidden_dims=[8]",
    "--epochs",
    "1",
    "--limit",
    "64",
    "--eval-limit",
    "16",
    "--k",
    "1",
    "--no-progress",
]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_out_is_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyvae.data

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was loaded before --out was checked")

    monkeypatch.setattr(pyvae.data, "load_dataset", no_data)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, err = _error([*TINY_RUN, "--out", str(busy)], capsys)
    assert code == 2 and "is not empty; pass --overwrite" in err
    code, err = _error([*TINY_RUN, "--out", str(busy), "--overwrite"], capsys)
    assert code == 2 and "replaces only a run folder" in err
    assert (busy / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    code, err = _error([*TINY_RUN, "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "expected a folder" in err
    monkeypatch.chdir(busy)
    code, err = _error([*TINY_RUN, "--out", ".", "--overwrite"], capsys)
    assert code == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eval-limit", "1"], "--eval-limit: expected at least 2"),
        (["--latent-dim", "2", "--model-arg", "latent_dim=5"], "latent_dim is set by --latent-dim"),
        (["--model-arg", "name=conv"], "name is set by --model"),
        (["--model-arg", "input_shape=[1,4,4]"], "input_shape is set by --data"),
        (["--model-arg", "hidden_dims=[4]"], "given twice with different values"),
        (["--threads", "-1"], "--threads"),
    ],
)
def test_option_conflicts_are_refused_before_training(
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyvae.data

    monkeypatch.setattr(pyvae.data, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    code, err = _error([*TINY_RUN, *extra, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "run").exists() and not _leftovers(tmp_path)


def test_overwrite_replaces_a_whole_run_only_when_the_new_one_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main([*TINY_RUN, "--no-figures", "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from before")
    first = (out / "model.safetensors").read_bytes()

    import pyvae.training

    real_fit = pyvae.training.fit

    def interrupted(*args: object, **kwargs: object) -> object:
        real_fit(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pyvae.training, "fit", interrupted)
    assert main([*TINY_RUN, "--seed", "1", "--no-figures", "--out", str(out), "--overwrite"]) == 130
    assert (out / "model.safetensors").read_bytes() == first  # the old run, untouched
    assert (out / "stale.txt").is_file() and not _leftovers(tmp_path)
    assert main([*TINY_RUN, "--seed", "1", "--no-figures", "--out", str(tmp_path / "new")]) == 130
    assert not (tmp_path / "new").exists() and not _leftovers(tmp_path)  # never half a run

    monkeypatch.setattr(pyvae.training, "fit", real_fit)
    assert main([*TINY_RUN, "--seed", "1", "--no-figures", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "stale.txt").exists()  # replaced as a whole
    assert (out / "model.safetensors").read_bytes() != first
    assert json.loads((out / "run.json").read_text())["training"]["seed"] == 1
    assert not _leftovers(tmp_path)


def test_tensorboard_logs_and_eval_output_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main([*TINY_RUN, "--no-figures", "--tensorboard", "--out", str(out)]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train_neg_elbo", "eval_neg_elbo", "active_units"} <= set(events.Tags()["scalars"])
    code, err = _error(["eval", str(out), "--k", "1", "--out", str(tmp_path / "r.txt")], capsys)
    assert code == 2 and "expected a .json file" in err
    assert main(["eval", str(out), "--k", "1", "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["k"] == 1


def test_autoencoder_and_conditional_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = ["--epochs", "1", "--limit", "64", "--eval-limit", "16", "--k", "2", "--no-progress"]
    assert (
        main(
            [
                "train",
                "--model",
                "ae",
                "--model-arg",
                "hidden_dims=[8]",
                *tiny,
                "--out",
                str(tmp_path / "ae"),
            ]
        )
        == 0
    )
    run = json.loads((tmp_path / "ae" / "run.json").read_text())
    assert run["metrics"]["eval_nll"] is None and run["metrics"]["eval_recon"] > 0
    assert "samples.png" not in run["files"] and "reconstructions.png" in run["files"]
    assert "no prior" in (tmp_path / "ae" / "report.html").read_text()
    assert (
        main(
            [
                "train",
                "--model",
                "mlp",
                "--model-arg",
                "hidden_dims=[8]",
                "--model-arg",
                "num_classes=10",
                *tiny,
                "--out",
                str(tmp_path / "cvae"),
            ]
        )
        == 0
    )
    evaluation = json.loads((tmp_path / "cvae" / "evaluation.json").read_text())
    assert evaluation["nll"] > 0 and evaluation["n"] == 16
    # a conditional run gets every figure (drawn with the labels), and the report shows them
    run = json.loads((tmp_path / "cvae" / "run.json").read_text())
    figures = ["reconstructions.png", "samples.png", "latent.png", "manifold.png"]
    figures += ["interpolation.png", "kl_per_dim.png", "curves.png"]
    assert set(figures) <= set(run["files"]), run["files"]
    page = (tmp_path / "cvae" / "report.html").read_text()
    assert all(f'<img src="{f}"' in page for f in figures)
    assert "One row per class" in page
    # pyvae sample: one row per class by default, --class picks them; an unconditional model
    # refuses --class
    model = pyvae.load(tmp_path / "cvae")
    side = model.input_shape[-1] + 1
    out = tmp_path / "s.png"
    assert main(["sample", str(tmp_path / "cvae"), "-n", "3", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (3 * side + 1, 10 * side + 1)  # 10 rows of 3
    two = ["--class", "2", "--class", "7"]
    assert main(["sample", str(tmp_path / "cvae"), "-n", "3", *two, "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (3 * side + 1, 2 * side + 1)
    code, err = _error(["sample", str(tmp_path / "cvae"), "--class", "10"], capsys)
    assert code == 2 and "--class: expected a class in [0, 9], got 10" in err
    code, err = _error(["sample", str(tmp_path / "ae"), "--class", "1"], capsys)
    assert code == 2 and "--class: Autoencoder is unconditional" in err
    assert main(["eval", str(tmp_path / "cvae"), "--k", "2", "--no-save"]) == 0


def test_sample_through_a_fitted_sampler(
    demo_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--sampler gmm`` fits a Gaussian mixture to the run's training digits, saves it beside
    the checkpoint, and the saved file gives the same grid again."""
    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run)  # the shared demo folder keeps its exact file list
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    assert main(["sample", str(run), "-n", "9", "--sampler", "gmm", "--out", a]) == 0
    assert "fitted the gmm sampler to" in capsys.readouterr().out
    saved = run / "sampler_gmm.safetensors"
    assert saved.is_file()
    assert main(["sample", str(run), "-n", "9", "--sampler", str(saved), "--out", b]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    code, err = _error(["sample", str(run), "--sampler", "nope"], capsys)
    assert code != 0 and "--sampler: expected a sampler name (gmm, two_stage)" in err


# hypothesis over CLI arguments: a bad value of any numeric option, or a component config that
# does not build, is one clear line with a non-zero status, before any data is read, and leaves
# no run folder behind.
_BAD_VALUES = st.sampled_from(["0", "-1", "-7", "nan", "inf", "-inf", "1e400", "abc", "", "2.5"])
_NUMERIC_OPTIONS = {
    "--epochs": _BAD_VALUES,
    "--latent-dim": _BAD_VALUES,
    "--batch-size": _BAD_VALUES,
    "--limit": _BAD_VALUES,
    "--eval-limit": st.sampled_from(["0", "1", "-3", "nan", "x", "2.5"]),
    "--lr": st.sampled_from(["0", "-1", "nan", "inf", "-inf", "abc", ""]),
    "--beta": st.sampled_from(["-1", "nan", "inf", "abc", ""]),
    "--threads": st.sampled_from(["-1", "nan", "abc", "2.5"]),
    "--k": _BAD_VALUES,
}
_BAD_COMPONENTS = st.sampled_from(
    [
        ["--likelihood", "gausian"],
        ["--likelihood", '{"name": "gaussian", "scale": -1}'],
        ["--prior", "{nope"],
        ["--prior", '{"name": "mog", "n_components": 0}'],
        ["--posterior", "flow"],
        ["--objective", '{"name": "beta_tc"}'],
        ["--objective", '{"name": "elbo", "beta": "inf"}'],
        ["--model-arg", "hidden_dims=[0]"],
        ["--model-arg", "num_classes=true"],
    ]
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bad=st.one_of(
        st.sampled_from(sorted(_NUMERIC_OPTIONS)).flatmap(
            lambda option: _NUMERIC_OPTIONS[option].map(lambda value: [option, value])
        ),
        _BAD_COMPONENTS,
    )
)
def test_any_bad_option_is_one_clear_line_before_training(
    bad: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyvae.training

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"training started despite {bad}")

    monkeypatch.setattr(pyvae.training, "fit", no_training)
    out = tmp_path / "run"
    # the option given last wins in argparse: put the bad value after the valid ones
    code, err = _error([*TINY_RUN, "--model", "mlp", *bad, "--out", str(out)], capsys)
    assert code in (1, 2) and "training started" not in err, (bad, err)
    assert "pyvae train: error:" in err or "usage:" in err, (bad, err)
    assert not out.exists() and not _leftovers(tmp_path), bad
