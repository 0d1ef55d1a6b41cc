"""Checkpoints: exact round trips for every model, and clear errors for bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import pyvae
from pyvae.checkpoint import CHECKPOINT_NAME, CheckpointError, read_info


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


CONFIGS = [
    {"name": "conv", "input_shape": [1, 8, 8], "latent_dim": 3, "channels": [4, 8],
     "hidden_dim": 16, "batch_norm": True},
    {"name": "mlp", "input_shape": [20], "latent_dim": 2, "hidden_dims": [8],
     "likelihood": "gaussian"},
    {"name": "denoising", "backbone": "mlp", "input_shape": [1, 8, 8], "latent_dim": 2,
     "hidden_dims": [8], "corruption": {"name": "masking", "p": 0.3}},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["name"])
def test_round_trip_is_exact(tmp_path: Path, config: dict) -> None:
    model = pyvae.build(config)
    with torch.no_grad():  # move every weight away from its initial value, and BN statistics
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model.train()(torch.rand(4, *model.input_shape))
    path = model.save(tmp_path / "m.safetensors", metadata={"note": "hello", "epochs": 3})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the private mode of a temp file
    loaded = pyvae.load(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert not loaded.training  # loaded for inference
    _assert_same_state(model, loaded)
    x = torch.rand(5, *model.input_shape)
    model.eval()
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))
    info = read_info(path)
    assert info.metadata == {"note": "hello", "epochs": 3}
    assert info.pyvae_version == pyvae.__version__
    assert info.config == model.config


def test_round_trip_keeps_float64_and_learned_prior(tmp_path: Path) -> None:
    priors = pyvae.list_priors()
    prior = "mog" if "mog" in priors else "normal"
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5], prior=prior)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save(tmp_path / "m.safetensors")
    loaded = pyvae.load(tmp_path / "m.safetensors")
    assert next(loaded.parameters()).dtype == torch.float64
    _assert_same_state(model, loaded)


def test_load_accepts_a_run_folder(tmp_path: Path) -> None:
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    model.save(tmp_path / CHECKPOINT_NAME)
    _assert_same_state(model, pyvae.load(tmp_path))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found.*nope.safetensors"):
        pyvae.load(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="folder without a checkpoint"):
        pyvae.load(tmp_path)


@pytest.mark.parametrize("keep", [0, 7, 200, 0.5, -1])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    good = model.save(tmp_path / "good.safetensors").read_bytes()
    n = int(len(good) * keep) if isinstance(keep, float) else (len(good) + keep if keep < 0
                                                               else keep)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good[:n])
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: not a readable safetensors"):
        pyvae.load(bad)


def test_not_a_pyvae_checkpoint(tmp_path: Path) -> None:
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    save_file({k: v.clone() for k, v in model.state_dict().items()}, tmp_path / "bare.st")
    with pytest.raises(CheckpointError, match="without pyvae metadata"):
        pyvae.load(tmp_path / "bare.st")
    (tmp_path / "text.st").write_text("print('this must never run')")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        pyvae.load(tmp_path / "text.st")


def _header(config: dict) -> dict[str, str]:
    return {"format": "pyvae-checkpoint", "format_version": "1", "pyvae_version": "0.1.0",
            "config": json.dumps(config), "metadata": "{}"}


def test_mismatched_weights_name_the_tensors(tmp_path: Path) -> None:
    small = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    big = pyvae.build("mlp", input_shape=[6], latent_dim=3, hidden_dims=[5])
    tensors = {k: v.clone() for k, v in small.state_dict().items()}
    save_file(tensors, tmp_path / "shape.safetensors", metadata=_header(big.config))
    expected = r"wrong shapes: .*expected shape \(6, 5\), got \(4, 5\)"
    with pytest.raises(CheckpointError, match=expected):
        pyvae.load(tmp_path / "shape.safetensors")
    tensors.pop("head.linear.bias")
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, tmp_path / "keys.safetensors", metadata=_header(small.config))
    with pytest.raises(CheckpointError, match="missing tensors: head.linear.bias; unexpected "
                                              "tensors: extra.weight"):
        pyvae.load(tmp_path / "keys.safetensors")


def test_unknown_model_and_bad_config(tmp_path: Path) -> None:
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    save_file(tensors, tmp_path / "u.st", metadata=_header({**model.config, "name": "my_plugin"}))
    with pytest.raises(CheckpointError, match="Unknown model 'my_plugin'.*plug-in"):
        pyvae.load(tmp_path / "u.st")
    save_file(tensors, tmp_path / "c.st", metadata=_header({**model.config, "colour": "red"}))
    with pytest.raises(CheckpointError, match="does not build a model.*'colour'"):
        pyvae.load(tmp_path / "c.st")
    header = _header(model.config)
    header["config"] = "{not json"
    save_file(tensors, tmp_path / "j.st", metadata=header)
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        pyvae.load(tmp_path / "j.st")
    header = {**_header(model.config), "format_version": "99"}
    save_file(tensors, tmp_path / "v.st", metadata=header)
    with pytest.raises(CheckpointError, match="format version 99, expected 1"):
        pyvae.load(tmp_path / "v.st")


def test_save_rejects_unserialisable_metadata(tmp_path: Path) -> None:
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    with pytest.raises(TypeError, match="JSON-serialisable"):
        model.save(tmp_path / "m.safetensors", metadata={"x": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
