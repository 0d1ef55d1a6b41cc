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
    {
        "name": "conv",
        "input_shape": [1, 8, 8],
        "latent_dim": 3,
        "channels": [4, 8],
        "hidden_dim": 16,
        "batch_norm": True,
    },
    {
        "name": "mlp",
        "input_shape": [20],
        "latent_dim": 2,
        "hidden_dims": [8],
        "likelihood": "gaussian",
    },
    {
        "name": "denoising",
        "backbone": "mlp",
        "input_shape": [1, 8, 8],
        "latent_dim": 2,
        "hidden_dims": [8],
        "corruption": {"name": "masking", "p": 0.3},
    },
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
    n = (
        int(len(good) * keep)
        if isinstance(keep, float)
        else (len(good) + keep if keep < 0 else keep)
    )
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
    return {
        "format": "pyvae-checkpoint",
        "format_version": "1",
        "pyvae_version": "0.1.0",
        "config": json.dumps(config),
        "metadata": "{}",
    }


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
    with pytest.raises(
        CheckpointError, match="missing tensors: head.linear.bias; unexpected tensors: extra.weight"
    ):
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


# -- hostile and damaged files ------------------------------------------------------------------


def _tiny() -> pyvae.BaseVAE:
    return pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])


def _write(
    path: Path, tensors: dict[str, torch.Tensor], model_config: dict, /, **header: str
) -> Path:
    save_file(tensors, path, metadata={**_header(model_config), **header})
    return path


def test_huge_config_is_refused_before_allocating(tmp_path: Path) -> None:
    """The numbers in the config are checked against the stored tensors on the meta device;
    (the peak memory is measured in a child process in test_reliability.py)."""
    model = _tiny()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    for change in ({"latent_dim": 10**7}, {"hidden_dims": [3 * 10**6]}, {"latent_dim": 10**18}):
        path = _write(tmp_path / "big.st", tensors, {**model.config, **change})
        with pytest.raises(CheckpointError, match="(wrong shapes|does not build a model)"):
            pyvae.load(path)


def test_deeply_nested_json_is_refused(tmp_path: Path) -> None:
    tensors = {k: v.clone() for k, v in _tiny().state_dict().items()}
    deep = '{"name": "mlp", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"
    path = _write(tmp_path / "d.st", tensors, _tiny().config, config=deep)
    with pytest.raises(CheckpointError, match="nests 50001 levels deep"):
        pyvae.load(path)
    with pytest.raises(CheckpointError, match="nests 50001 levels deep"):
        read_info(path)
    # brackets inside strings do not count
    text = json.dumps({**_tiny().config, "note": "[[[[" * 100})
    path = _write(tmp_path / "s.st", tensors, _tiny().config, metadata=text)
    assert read_info(path).metadata["note"] == "[[[[" * 100
    nested = '{"a": ' * 40 + "1" + "}" * 40
    path = _write(tmp_path / "m.st", tensors, _tiny().config, metadata=nested)
    with pytest.raises(CheckpointError, match="metadata in the checkpoint header nests 40"):
        read_info(path)


def test_config_much_larger_than_its_weights_is_refused(tmp_path: Path) -> None:
    model = _tiny()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    path = _write(tmp_path / "c.st", tensors, {**model.config, "hidden_dims": [1] * 5000})
    with pytest.raises(CheckpointError, match=r"holds 50\d\d JSON values for \d+ tensors"):
        pyvae.load(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path, bad: float) -> None:
    model = _tiny()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["head.linear.weight"][1, 2] = bad
    path = _write(tmp_path / "n.st", tensors, model.config)
    with pytest.raises(CheckpointError, match=r"'head.linear.weight' holds non-finite.*of 20\)"):
        pyvae.load(path)
    loaded = pyvae.load(path, allow_non_finite=True)  # the debugging opt-out
    assert torch.equal(loaded.head.linear.weight.isnan(), tensors["head.linear.weight"].isnan())
    with pytest.raises(TypeError, match="allow_non_finite: expected a bool"):
        pyvae.load(path, allow_non_finite="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_weights_are_refused(tmp_path: Path, dtype: torch.dtype) -> None:
    model = _tiny()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["head.linear.bias"] = tensors["head.linear.bias"].to(dtype)
    path = _write(tmp_path / "i.st", tensors, model.config)
    with pytest.raises(
        CheckpointError,
        match=rf"head.linear.bias: expected a floating-point "
        rf"tensor, got {dtype}",
    ):
        pyvae.load(path)


def test_batch_norm_counter_keeps_its_dtype(tmp_path: Path) -> None:
    model = pyvae.build(CONFIGS[0])
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k in tensors if k.endswith("num_batches_tracked"))
    tensors[name] = tensors[name].float()
    path = _write(tmp_path / "bn.st", tensors, model.config)
    with pytest.raises(CheckpointError, match=rf"{name}: expected torch.int64, got torch.float32"):
        pyvae.load(path)


def test_float_casts_are_plain_casts(tmp_path: Path) -> None:
    model = _tiny()
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        tensors = {k: v.to(dtype) for k, v in model.state_dict().items()}
        loaded = pyvae.load(_write(tmp_path / "f.st", tensors, model.config))
        assert all(p.dtype == dtype for p in loaded.parameters())
        for k, v in loaded.state_dict().items():
            assert torch.equal(v, tensors[k]), k
    # mixed float dtypes: the model keeps its default dtype, each tensor is cast into it
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["head.linear.bias"] = tensors["head.linear.bias"].half()
    loaded = pyvae.load(_write(tmp_path / "mix.st", tensors, model.config))
    assert loaded.head.linear.bias.dtype == torch.float32
    assert torch.equal(loaded.head.linear.bias, tensors["head.linear.bias"].float())


def test_unknown_tensor_dtype_is_refused(tmp_path: Path) -> None:
    model = _tiny()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["head.linear.bias"] = tensors["head.linear.bias"].to(torch.float8_e4m3fn)
    path = _write(tmp_path / "f8.st", tensors, model.config)
    with pytest.raises(CheckpointError, match="'head.linear.bias' has the dtype F8_E4M3"):
        pyvae.load(path)


@pytest.mark.parametrize(
    ("location", "error", "pattern"),
    [
        ("bogus", ValueError, "map_location: expected a device such as 'cpu'.*'bogus'"),
        ("meta", ValueError, "map_location: 'meta' holds no values"),
        (3.5, TypeError, "map_location: expected a device such as 'cpu' or 'cuda:0', got float"),
        (True, TypeError, "map_location: expected a device"),
    ],
)
def test_bad_map_location(tmp_path: Path, location: object, error: type, pattern: str) -> None:
    path = _tiny().save(tmp_path / "m.safetensors")
    with pytest.raises(error, match=pattern):
        pyvae.load(path, map_location=location)  # type: ignore[arg-type]


def test_unavailable_device_is_a_clear_error(tmp_path: Path) -> None:
    path = _tiny().save(tmp_path / "m.safetensors")
    if torch.cuda.is_available():
        assert next(pyvae.load(path, map_location="cuda").parameters()).is_cuda
    else:
        with pytest.raises(ValueError, match="map_location: the device 'cuda' is not usable"):
            pyvae.load(path, map_location="cuda")


# -- saving -------------------------------------------------------------------------------------


def test_save_into_an_existing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=r"is a folder; give a file name, e\.g\. .*model"):
        _tiny().save(tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("metadata", "error", "pattern"),
    [
        ({"loss": float("nan")}, ValueError, r"metadata\['loss'\] is nan; JSON has no NaN"),
        ({"m": {"x": [1, float("inf")]}}, ValueError, r"metadata\['m'\]\['x'\]\[1\] is inf"),
        ({1: 2}, TypeError, "metadata has the key 1 of type int; JSON keys are strings"),
        ({"t": torch.zeros(1)}, TypeError, r"metadata\['t'\] is a Tensor, which is not JSON"),
        ([("a", 1)], TypeError, "metadata: expected a mapping"),
    ],
)
def test_save_refuses_non_standard_json(
    tmp_path: Path, metadata: object, error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        _tiny().save(tmp_path / "m.safetensors", metadata=metadata)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_save_refuses_nesting_that_load_would_refuse(tmp_path: Path) -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        _tiny().save(tmp_path / "m.safetensors", metadata={"deep": deep})


def test_unregistered_subclass_is_refused_at_save(tmp_path: Path) -> None:
    class Mine(pyvae.MLPVAE):
        def encode(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
            return super().encode(x)

    model = Mine(input_shape=(6,), latent_dim=2, hidden_dims=(5,))
    with pytest.raises(
        ValueError,
        match=r"Mine is not registered under its own name \(it "
        r"derives from MLPVAE, registered as 'mlp'.*register_m",
    ):
        model.save(tmp_path / "m.safetensors")
    with pyvae.MODELS.scoped():
        pyvae.register_model("mine-test")(Mine)
        path = model.save(tmp_path / "m.safetensors")
        assert read_info(path).config["name"] == "mine-test"
        assert type(pyvae.load(path)) is Mine


def test_unregistered_component_is_refused_at_save(tmp_path: Path) -> None:
    class MyPrior(pyvae.StandardNormalPrior):
        pass

    model = pyvae.build(
        "mlp", input_shape=[6], latent_dim=2, hidden_dims=[5], prior=MyPrior(latent_dim=2)
    )
    with pytest.raises(ValueError, match=r"config\['prior'\] is a .*MyPrior, a class that is not"):
        model.save(tmp_path / "m.safetensors")


def test_damaged_weights_fail_the_checksum(tmp_path: Path) -> None:
    path = _tiny().save(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last weight: still finite
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the checksum .* damaged"):
        pyvae.load(path)
    # a file without a checksum (written by pyvae 0.1) still loads
    model = _tiny()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    assert isinstance(pyvae.load(_write(tmp_path / "old.st", tensors, model.config)), pyvae.MLPVAE)


def test_a_number_that_builds_many_modules_is_refused_during_the_meta_build(tmp_path: Path) -> None:
    """``n_steps=10**6`` in a 3 KB file built 10**6 flow steps (Python objects: memory and
    minutes) before any shape was compared; the build is now cut off after a budget of modules,
    parameters and buffers set by the number of stored tensors."""
    model = pyvae.build("mlp", input_shape=[4], latent_dim=2, hidden_dims=[8], posterior="iaf")
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    config = {**model.config, "posterior": {"name": "iaf", "n_steps": 10**6}}
    path = _write(tmp_path / "iaf.st", tensors, config)
    with pytest.raises(CheckpointError, match=r"builds more than \d+ modules, parameters and buf"):
        pyvae.load(path)
    # the hooks are gone afterwards: building big models is not limited outside load
    assert pyvae.build("mlp", input_shape=[4], posterior={"name": "iaf", "n_steps": 300})


def test_the_registration_budget_counts_only_the_loading_thread(tmp_path: Path) -> None:
    import threading

    from pyvae.checkpoint import MODULE_SLACK, _registration_budget

    built: list[int] = []

    def other_thread() -> None:  # registrations elsewhere neither count nor fail
        built.append(len(torch.nn.Sequential(*[torch.nn.ReLU() for _ in range(2 * MODULE_SLACK)])))

    with pytest.raises(CheckpointError, match="builds more than 1024 modules"):
        with _registration_budget(tmp_path / "x", 0):
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            assert built == [2 * MODULE_SLACK]
            torch.nn.Sequential(*[torch.nn.ReLU() for _ in range(2 * MODULE_SLACK)])


def test_out_of_memory_while_loading_is_a_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _tiny().save(tmp_path / "m.safetensors")

    def no_memory(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB")

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", no_memory)
    with pytest.raises(CheckpointError, match="out of memory while loading on cpu"):
        pyvae.load(path)
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # other errors are not disguised
        pyvae.load(path)


def _without(config: dict, key: str) -> dict:
    return {k: v for k, v in config.items() if k != key}


def test_a_conv_checkpoint_from_before_kernel_size_loads_with_its_3x3_kernels(
    tmp_path: Path,
) -> None:
    """pyvae 0.2 wrote conv configs without ``kernel_size`` (its kernels were 3x3); the default
    is now 4, and such a checkpoint must still rebuild the model it holds."""
    torch.manual_seed(0)
    old = pyvae.build("conv", input_shape=[1, 12, 12], latent_dim=2, channels=[4], kernel_size=3)
    tensors = {k: v.clone() for k, v in old.state_dict().items()}
    save_file(tensors, tmp_path / "old.st", metadata=_header(_without(old.config, "kernel_size")))
    loaded = pyvae.load(tmp_path / "old.st")
    assert loaded.config["kernel_size"] == 3
    _assert_same_state(old, loaded)
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(loaded.encode(x).mean, old.eval().encode(x).mean)
    # a user's own config without kernel_size means today's default, not the old one
    assert pyvae.build(_without(old.config, "kernel_size")).config["kernel_size"] == 4


def test_an_old_denoising_conv_checkpoint_loads_and_new_ones_record_the_backbone(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    kwargs = {"input_shape": [1, 12, 12], "latent_dim": 2, "channels": [4]}
    old = pyvae.build("denoising", backbone="conv", kernel_size=3, **kwargs)
    # 0.2 stored the backbone's name beside its arguments, without kernel_size
    stored = {"name": "denoising", "backbone": "conv", "corruption": "gaussian", **kwargs}
    tensors = {k: v.clone() for k, v in old.state_dict().items()}
    save_file(tensors, tmp_path / "old.st", metadata=_header(stored))
    loaded = pyvae.load(tmp_path / "old.st")
    assert loaded.backbone.config["kernel_size"] == 3
    _assert_same_state(old, loaded)
    # now the backbone's whole config is recorded, so the default cannot change what it rebuilds
    new = pyvae.build("denoising", backbone="conv", **kwargs)
    assert new.config["backbone"]["kernel_size"] == 4
    new.save(tmp_path / "new.st")
    assert pyvae.load(tmp_path / "new.st").backbone.config == new.backbone.config
