"""Reliability under hostile and careless use: configs x inputs x checkpoint damage.

Hypothesis drives the damage (the fixed "ci" profile of conftest.py keeps it fast and
deterministic); the memory bounds are measured in child processes (their peak resident size), so
that one test's allocations do not hide another's.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file
from tiny import pairs, tiny_model

import pyvae
from pyvae.checkpoint import CheckpointError, read_info

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_MODELS = [
    ("mlp", "gaussian", "normal"),
    ("conv", "bernoulli", "vamp"),
    ("denoising", "bernoulli", "mog"),
]


@functools.cache
def _saved(index: int) -> tuple[bytes, dict[str, Any], dict[str, torch.Tensor]]:
    """A tiny model's checkpoint bytes, config and state (built once per session)."""
    name, likelihood, prior = CHECKPOINT_MODELS[index]
    torch.manual_seed(index)
    model = tiny_model(name, likelihood, prior, latent_dim=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "m.safetensors", metadata={"epochs": 1})
        data = path.read_bytes()
    return data, model.config, {k: v.clone() for k, v in model.state_dict().items()}


def _header_end(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def _load_or_refuse(data: bytes) -> pyvae.BaseVAE | None:
    """Load the bytes as a checkpoint: a model, or a CheckpointError (None); nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        path.write_bytes(data)
        try:
            info = read_info(path)
        except CheckpointError:
            info = None
        try:
            model = pyvae.load(path)
        except CheckpointError:
            return None
    assert info is not None  # what loads can be inspected
    assert isinstance(model, pyvae.BaseVAE) and not model.training
    for name, t in model.state_dict().items():
        assert not t.is_floating_point() or bool(torch.isfinite(t).all()), name
    return model


model_index = st.integers(0, len(CHECKPOINT_MODELS) - 1)


@given(model_index, st.data())
def test_truncated_anywhere(index: int, data: st.DataObject) -> None:
    good = _saved(index)[0]
    cut = data.draw(st.integers(0, len(good) - 1), label="cut")
    assert _load_or_refuse(good[:cut]) is None


@given(model_index, st.data())
def test_bytes_flipped_in_the_header(index: int, data: st.DataObject) -> None:
    good = bytearray(_saved(index)[0])
    end = _header_end(good)
    for _ in range(data.draw(st.integers(1, 3), label="flips")):
        at = data.draw(st.integers(0, end - 1), label="at")
        good[at] = data.draw(st.integers(0, 255), label="byte")
    _load_or_refuse(bytes(good))


@given(model_index, st.data())
def test_bytes_flipped_in_the_weights(index: int, data: st.DataObject) -> None:
    """safetensors has no checksum; pyvae stores one: a changed weight byte never loads."""
    good = bytearray(_saved(index)[0])
    start = _header_end(good)
    at = data.draw(st.integers(start, len(good) - 1), label="at")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != good[at]), label="byte")
    good[at] = byte
    assert _load_or_refuse(bytes(good)) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
config_values = (
    st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 10**7, 10**18, 2**63, True, False, None, 1.5, float("1e300")])
    | st.lists(st.integers(-5, 10**7), max_size=4)
    | st.text(max_size=10)
    | json_values
)


@given(model_index, st.data())
def test_config_values_changed(index: int, data: st.DataObject) -> None:
    raw, config, tensors = _saved(index)
    key = data.draw(st.sampled_from(sorted(config)), label="key")
    value = data.draw(config_values, label="value")
    changed = {**config, key: value}
    header = dict(json.loads(raw[8 : _header_end(raw)])["__metadata__"])
    header["config"] = json.dumps(changed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        save_file(tensors, path, metadata=header)
        model = _load_or_refuse(path.read_bytes())
    if model is not None:  # only a value that builds the same tensors loads
        assert list(model.state_dict()) == list(tensors)


@given(model_index, json_values, json_values)
def test_any_json_in_the_header(index: int, config: Any, metadata: Any) -> None:
    raw, _, tensors = _saved(index)
    header = dict(json.loads(raw[8 : _header_end(raw)])["__metadata__"])
    header["config"] = json.dumps(config)
    header["metadata"] = json.dumps(metadata)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        save_file(tensors, path, metadata=header)
        assert _load_or_refuse(path.read_bytes()) is None or isinstance(config, dict)


tensor_dtypes = st.sampled_from(
    [
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int64,
        torch.int8,
        torch.uint8,
        torch.bool,
    ]
)


@given(model_index, st.data())
def test_tensors_replaced(index: int, data: st.DataObject) -> None:
    raw, _, tensors = _saved(index)
    tensors = dict(tensors)
    name = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
    shape = data.draw(
        st.just(tuple(tensors[name].shape)) | st.lists(st.integers(0, 5), max_size=3).map(tuple),
        label="shape",
    )
    dtype = data.draw(tensor_dtypes, label="dtype")
    fill = data.draw(st.sampled_from([0.5, float("nan"), float("inf"), 1e30]), label="fill")
    tensors[name] = (
        torch.full(shape, fill).to(dtype)
        if dtype.is_floating_point
        else torch.zeros(shape, dtype=dtype)
    )
    if data.draw(st.booleans(), label="drop another"):
        tensors.pop(data.draw(st.sampled_from(sorted(tensors)), label="dropped"))
    header = dict(json.loads(raw[8 : _header_end(raw)])["__metadata__"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        save_file(tensors, path, metadata=header)
        _load_or_refuse(path.read_bytes())


# -- memory: a file never drives allocations ------------------------------------------------------

_PEAK = """
import json, resource, sys
import pyvae
from pyvae.data import read_idx

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)

pyvae.load(sys.argv[1])  # warm up: lazy imports count in the baseline
try:
    read_idx(sys.argv[1])
except ValueError:
    pass
base = peak()
results = {}
for path in sys.argv[2:]:
    try:
        (read_idx if path.endswith(".gz") else pyvae.load)(path)
        outcome = "loaded"
    except (ValueError, pyvae.CheckpointError) as exc:
        outcome = type(exc).__name__
    results[path] = [outcome, peak() - base]
print(json.dumps(results))
"""


@pytest.mark.slow  # starts a process
def test_hostile_files_do_not_drive_memory(tmp_path: Path) -> None:
    """Each file below made pyvae 0.1 allocate 200-800 MiB; now the peak resident size of a
    child process grows by a few MiB at most."""
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    good = model.save(tmp_path / "good.safetensors")
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    header = dict(read_info(good).__dict__)
    files = []
    for i, change in enumerate(
        [{"latent_dim": 10**7}, {"hidden_dims": [3 * 10**6]}, {"input_shape": [10**8]}]
    ):
        meta = {
            "format": "pyvae-checkpoint",
            "format_version": "1",
            "config": json.dumps({**header["config"], **change}),
            "metadata": "{}",
        }
        save_file(tensors, tmp_path / f"big{i}.safetensors", metadata=meta)
        files.append(tmp_path / f"big{i}.safetensors")
    flows = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5], posterior="iaf")
    meta = {
        "format": "pyvae-checkpoint",
        "format_version": "1",
        "config": json.dumps({**flows.config, "posterior": {"name": "iaf", "n_steps": 10**6}}),
        "metadata": "{}",
    }
    flow_tensors = {k: v.clone() for k, v in flows.state_dict().items()}
    save_file(flow_tensors, tmp_path / "steps.safetensors", metadata=meta)
    files.append(tmp_path / "steps.safetensors")
    deep = {
        "format": "pyvae-checkpoint",
        "format_version": "1",
        "config": '{"name": "mlp", "x": ' + "[" * 10**5 + "]" * 10**5 + "}",
    }
    save_file(tensors, tmp_path / "deep.safetensors", metadata=deep)
    files.append(tmp_path / "deep.safetensors")
    import gzip

    for name, head in (
        ("bomb", b"\x01\x02\x03\x04"),
        ("lie", bytes([0, 0, 8, 3]) + struct.pack(">3I", 100, 28, 28)),
    ):
        with gzip.open(tmp_path / f"{name}-idx3-ubyte.gz", "wb") as f:
            f.write(head)
            for _ in range(200):
                f.write(bytes(1 << 20))  # 200 MiB of zeros, about 200 KB compressed
        files.append(tmp_path / f"{name}-idx3-ubyte.gz")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PEAK), str(good), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for path, (outcome, grown) in results.items():
        assert outcome in ("CheckpointError", "ValueError"), (path, outcome)
        assert grown < 32, f"{path}: peak memory grew by {grown:.0f} MiB"


# -- the command line trusts no checkpoint metadata ------------------------------------------------


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"name": "../../etc"}, "data.name: expected one of digits"),
        ({"name": "digits", "seed": "0; rm"}, r"data.seed: expected an integer in \[0, 2\*\*63\)"),
        ({"name": "digits", "seed": True}, "data.seed"),
        ({"name": "digits", "seed": 2**70}, "data.seed"),
        ({"name": "digits", "eval_limit": -5}, "data.eval_limit: expected a positive integer"),
        ({"name": "mnist", "data_dir": 5}, "data.data_dir: expected a folder name"),
        ([1, 2], "data.: expected an object"),
    ],
)
def test_eval_validates_the_metadata_it_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: object, pattern: str
) -> None:
    from pyvae.cli import main

    model = pyvae.build("mlp", input_shape=[1, 8, 8], latent_dim=2, hidden_dims=[8])
    path = model.save(tmp_path / "m.safetensors", metadata={"data": data})
    assert main(["eval", str(path), "--limit", "4", "--k", "1"]) == 1
    assert re.search(pattern, capsys.readouterr().err)


def test_eval_never_lets_the_file_choose_a_download_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyvae.cli import main

    model = pyvae.build("mlp", input_shape=[1, 28, 28], latent_dim=2, hidden_dims=[8])
    metadata = {"data": {"name": "mnist", "data_dir": str(tmp_path / "elsewhere")}}
    path = model.save(tmp_path / "m.safetensors", metadata=metadata)
    assert main(["eval", str(path), "--download"]) == 2
    assert "--download: pass --data-dir too" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("device", ["meta", "bogus"])
def test_cli_device_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str
) -> None:
    from pyvae.cli import main

    model = pyvae.build("mlp", input_shape=[1, 8, 8], latent_dim=2, hidden_dims=[8])
    path = model.save(tmp_path / "m.safetensors")
    assert main(["sample", str(path), "-n", "4", "--device", device]) == 2
    assert "--device" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


# -- beyond the list ---------------------------------------------------------------------


def test_non_standard_json_constants_in_the_header_are_refused(tmp_path: Path) -> None:
    model = pyvae.build("mlp", input_shape=[6], latent_dim=2, hidden_dims=[5])
    path = model.save(tmp_path / "m.safetensors")
    raw = path.read_bytes()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    header = dict(json.loads(raw[8 : _header_end(raw)])["__metadata__"])
    for constant in ("NaN", "Infinity", "-Infinity"):
        save_file(tensors, path, metadata={**header, "metadata": '{"loss": ' + constant + "}"})
        with pytest.raises(CheckpointError, match=f"non-standard JSON constant {constant}"):
            read_info(path)


def test_save_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="save: expected a pyvae model .BaseVAE., got Linear"):
        pyvae.checkpoint.save(torch.nn.Linear(2, 2), tmp_path / "m.safetensors")  # type: ignore[arg-type]


def test_sample_bounds_what_a_checkpoint_makes_it_decode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A conv model's weights do not depend on the image size: a tiny checkpoint can claim huge
    images. ``pyvae sample`` refuses to decode more than 2**28 values at once."""
    from pyvae.cli import main

    model = pyvae.build(
        "conv", input_shape=[1, 2**12, 2**12], latent_dim=2, channels=[1] * 12, hidden_dim=2
    )
    path = model.save(tmp_path / "m.safetensors")
    assert path.stat().st_size < 20_000
    assert main(["sample", str(path), "-n", "64", "--device", "cpu"]) == 2
    assert "more than 268435456" in capsys.readouterr().err


def test_empty_idx_image_set_is_refused(tmp_path: Path) -> None:
    from pyvae.data import read_mnist_folder

    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + struct.pack(">3I", 0, 2, 2)
    )
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 0))
    with pytest.raises(ValueError, match="expected at least one image"):
        read_mnist_folder(tmp_path)


@pytest.mark.parametrize(("name", "likelihood", "prior"), list(pairs()))
def test_every_model_loads_through_the_meta_device(
    tmp_path: Path, name: str, likelihood: str, prior: str, one_thread: None
) -> None:
    """Every registered model, likelihood and prior builds on the meta device and round-trips."""
    model = tiny_model(name, likelihood, prior)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    loaded = pyvae.load(model.save(tmp_path / "m.safetensors"))
    assert type(loaded) is type(model) and loaded.config == model.config
    state = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == state[key].dtype and torch.equal(value, state[key]), key


def test_sparse_and_meta_inputs_get_clear_errors() -> None:
    model = pyvae.build("mlp", input_shape=[4], latent_dim=2, hidden_dims=[8])
    with pytest.raises(TypeError, match="x: expected a dense .strided. tensor, got layout"):
        model(torch.rand(3, 4).to_sparse())
    conditional = pyvae.build("mlp", input_shape=[4], latent_dim=2, hidden_dims=[8], num_classes=2)
    with pytest.raises(TypeError, match="y: expected a dense .strided. tensor, got layout"):
        conditional(torch.rand(2, 4), torch.tensor([0, 1]).to_sparse())
    meta = model.to("meta")
    with pytest.raises(ValueError, match="meta device, which holds no values .* value checks"):
        meta(torch.empty(3, 4, device="meta"))
    pyvae.set_validate_args(False)
    try:  # with value checks off the meta device traces shapes (see test_devices.py)
        assert meta(torch.empty(3, 4, device="meta")).params.shape == (3, 4)
    finally:
        pyvae.set_validate_args(True)


# -- edge cases of the core (0.2) ---------------------------------------------------------------


def _mlp(**kw: Any) -> pyvae.BaseVAE:
    return pyvae.build("mlp", input_shape=[4], latent_dim=2, hidden_dims=[8], **kw)


def _bn_conv() -> pyvae.BaseVAE:
    # 2x2 images through two stride-2 3x3 convolutions: a 1x1 feature map at the second batch norm
    return pyvae.build(
        "conv",
        input_shape=[1, 2, 2],
        channels=[2, 2],
        hidden_dim=4,
        latent_dim=2,
        batch_norm=True,
        kernel_size=3,
    )


EMPTY_ENTRY_POINTS = {
    "forward": lambda m, x: m(x),
    "loss": lambda m, x: m.loss(x, m(torch.rand(1, 4))),
    "reconstruct": lambda m, x: m.reconstruct(x),
    "elbo": lambda m, x: pyvae.elbo(m, x),
    "iwae_bound": lambda m, x: pyvae.iwae_bound(m, x, 3),
    "log_likelihood": lambda m, x: pyvae.log_likelihood(m, x, k=3),
    "model.log_likelihood": lambda m, x: m.log_likelihood(x, k=3),
}


@pytest.mark.parametrize("entry", sorted(EMPTY_ENTRY_POINTS))
def test_every_entry_point_refuses_an_empty_batch(entry: str) -> None:
    """One decision everywhere: an empty batch is a clear error (its mean loss would be NaN)."""
    with pytest.raises(ValueError, match=r"x: expected at least one example, got an empty batch"):
        EMPTY_ENTRY_POINTS[entry](_mlp(), torch.rand(0, 4))


@pytest.mark.parametrize("name", ["elbo", "iwae_bound", "log_likelihood"])
def test_bounds_never_return_a_silent_nan(name: str) -> None:
    model = _mlp()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e30)
    fn = {
        "elbo": lambda: pyvae.elbo(model, torch.rand(3, 4)),
        "iwae_bound": lambda: pyvae.iwae_bound(model, torch.rand(3, 4), 2),
        "log_likelihood": lambda: pyvae.log_likelihood(model, torch.rand(3, 4), k=2),
    }[name]
    with pytest.raises(FloatingPointError, match=rf"{name}: 3 of 3 examples gave a non-finite"):
        fn()
    pyvae.set_validate_args(False)
    try:  # the documented opt-out
        assert not bool(torch.isfinite(fn()).all())
    finally:
        pyvae.set_validate_args(True)


def test_bounds_decode_a_bounded_number_of_samples_by_default() -> None:
    from pyvae.evaluation import DEFAULT_CHUNK_SIZE

    model = _mlp()
    rows: list[int] = []
    decode = model.decode

    def counting(z: torch.Tensor, *args: Any) -> torch.Tensor:
        rows.append(z.shape[0])
        return decode(z, *args)

    model.decode = counting  # type: ignore[method-assign]
    x = torch.rand(3, 4)
    for bound in (lambda: pyvae.iwae_bound(model, x, 5000), lambda: pyvae.elbo(model, x, k=5000)):
        rows.clear()
        bound()
        assert sum(rows) == 5000 * 3 and max(rows) <= DEFAULT_CHUNK_SIZE


def test_sample_arguments_get_clear_errors() -> None:
    model = _mlp()
    with pytest.raises(TypeError, match="generator: expected a torch.Generator or None, got str"):
        model.sample(2, generator="seed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n: 10000000000000000000 samples .* more values than"):
        model.sample(10**19)
    with pytest.raises(MemoryError, match=r"sample: not enough memory for n=10000000000000"):
        model.sample(10**13)  # 4e13 values: refused by the allocator, said in pyvae's terms


def test_loss_refuses_another_models_output() -> None:
    model, other = _mlp(), pyvae.build("mlp", input_shape=[5], latent_dim=3, hidden_dims=[8])
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match=r"out: expected the output of this model for x"):
        model.loss(x, other(torch.rand(3, 5)))
    with pytest.raises(ValueError, match=r"got params of shape \(2, 4\)"):
        model.loss(x, model(torch.rand(2, 4)))  # another batch


def test_batch_norm_with_one_value_per_channel() -> None:
    model = _bn_conv().train()
    with pytest.raises(ValueError, match="batch norm needs more than one value per channel"):
        model(torch.rand(1, 1, 2, 2))
    assert model(torch.rand(2, 1, 2, 2)).params.shape == (2, 1, 2, 2)
    assert model.eval()(torch.rand(1, 1, 2, 2)).params.shape == (1, 1, 2, 2)


def test_sample_and_reconstruct_in_train_mode_leave_batch_norm_alone() -> None:
    model = _bn_conv().train()
    model(torch.rand(8, 1, 2, 2))  # some running statistics
    model.decoder[-1].eval()  # a submodule in its own mode: restored as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.sample(16)
    model.reconstruct(torch.rand(4, 1, 2, 2))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.training and not model.decoder[-1].training
    assert all(m.training for m in model.encoder.modules())


@pytest.mark.parametrize("beta", [float("inf"), float("nan"), True, -1.0, "1"])
def test_beta_is_a_finite_number_everywhere(beta: object) -> None:
    model = _mlp()
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="beta: expected a finite number >= 0"):
        model.loss(x, model(x), beta=beta)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta: expected a finite number >= 0"):
        pyvae.linear_warmup(1, 10, beta=beta)  # type: ignore[arg-type]


def _numeric_arguments() -> list[tuple[str, str, str, object]]:
    """(role, name, argument, bad value) for every numeric argument of every registered part."""
    import inspect

    from pyvae.objectives import OBJECTIVES
    from pyvae.posteriors import POSTERIORS

    registries = {
        "likelihood": pyvae.LIKELIHOODS,
        "prior": pyvae.PRIORS,
        "objective": OBJECTIVES,
        "posterior": POSTERIORS,
        "corruption": pyvae.CORRUPTIONS,
        "model": pyvae.MODELS,
    }
    cases = []
    for role, registry in registries.items():
        for name in registry.names():
            for arg, p in inspect.signature(registry.get(name)).parameters.items():
                default = p.default
                if isinstance(default, bool) or not isinstance(default, (int, float)):
                    continue
                bads = [True, "1"] + ([math.nan, math.inf] if isinstance(default, float) else [2.5])
                cases += [(role, name, arg, bad) for bad in bads]
    return cases


@pytest.mark.parametrize(("role", "name", "arg", "bad"), _numeric_arguments())
def test_number_checks_agree_everywhere(role: str, name: str, arg: str, bad: object) -> None:
    """A bool is not a number, NaN and infinity are not sizes or scales: every numeric argument of
    every registered part refuses them with a ValueError (ConfigError) or TypeError."""
    spec = {"name": name, arg: bad}
    with pytest.raises((ValueError, TypeError)):
        if role == "model":
            pyvae.build(spec)
        elif role == "corruption":
            pyvae.build("denoising", input_shape=[4], hidden_dims=[8], corruption=spec)
        else:
            pyvae.build("mlp", input_shape=[4], latent_dim=2, hidden_dims=[8], **{role: spec})


def test_a_component_serves_one_model() -> None:
    """Regression: a component instance passed to two builds was silently shared."""
    prior = pyvae.PRIORS.build({"name": "learned_normal", "latent_dim": 2})
    likelihood = pyvae.LIKELIHOODS.build({"name": "gaussian", "event_shape": [4]})
    first = _mlp(prior=prior, likelihood=likelihood)
    with pytest.raises(pyvae.ConfigError, match="prior: this .* already belongs to another model"):
        _mlp(prior=prior)
    with pytest.raises(pyvae.ConfigError, match="likelihood: .* already belongs to another model"):
        _mlp(likelihood=likelihood)
    assert first.prior is prior and first.likelihood is likelihood


# -- configs x inputs ----------------------------------------------------------------------------

small_configs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["mlp", "conv", "denoising"]),
        "latent_dim": st.integers(1, 3) | st.sampled_from([0, -1, True, 2.0, None]),
        "likelihood": st.sampled_from(["bernoulli", "gaussian", "laplace", "nope", None]),
        "prior": st.sampled_from(["normal", "learned_normal", "mog", None]),
    }
)
input_dtypes = st.sampled_from(
    [torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool]
)


@given(small_configs, st.data())
def test_configs_and_inputs_give_outputs_or_clear_errors(config: dict, data: st.DataObject) -> None:
    """Whatever the config and the input, a call returns a result of the right shape or raises a
    ValueError/TypeError (ConfigError, UnknownNameError, FloatingPointError are among them)."""
    config = {k: v for k, v in config.items() if v is not None}
    shape = (1, 4, 4)
    extra = {"mlp": {"hidden_dims": [8]}, "conv": {"channels": [2], "hidden_dim": 4}}
    try:
        model = pyvae.build(
            {**config, "input_shape": shape, **extra.get(config["name"], {"hidden_dims": [8]})}
        )
    except (ValueError, TypeError):
        return
    batch = data.draw(st.integers(0, 3), label="batch")
    x_shape = data.draw(
        st.just((batch, *shape)) | st.lists(st.integers(0, 4), max_size=4).map(tuple),
        label="x shape",
    )
    dtype = data.draw(input_dtypes, label="dtype")
    x = torch.rand(x_shape).to(dtype)
    if x.is_floating_point() and x.numel() and data.draw(st.booleans(), label="poison"):
        x.view(-1)[0] = data.draw(st.sampled_from([math.nan, math.inf, -1.0, 2.0]), label="value")
    if x.dim() >= 2 and data.draw(st.booleans(), label="non-contiguous"):
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    model.train(data.draw(st.booleans(), label="train"))
    call = data.draw(st.sampled_from(["forward", "loss", "reconstruct", "elbo"]), label="call")
    try:
        if call == "forward":
            result = model(x).params
        elif call == "loss":
            result = model.loss(x, model(x)).recon
        elif call == "reconstruct":
            result = model.reconstruct(x)
        else:
            result = pyvae.elbo(model, x)
    except (ValueError, TypeError):
        return
    assert result.shape[0] == x.shape[0] and bool(torch.isfinite(result).all())


def test_deeply_nested_sampler_config_is_a_sampler_error(tmp_path: Path) -> None:
    from pyvae import samplers

    model = pyvae.build("mlp", input_shape=[4], latent_dim=2, hidden_dims=[8])
    header = {
        "format": "pyvae-sampler",
        "format_version": "1",
        "latent_dim": "2",
        "config": '{"name": "gmm", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    }
    save_file({"weights": torch.ones(10)}, tmp_path / "s.safetensors", metadata=header)
    with pytest.raises(samplers.SamplerError, match="nests deeper than 32 levels"):
        samplers.load(tmp_path / "s.safetensors", model)


def _parts() -> list[tuple[str, str]]:
    from pyvae.objectives import OBJECTIVES
    from pyvae.posteriors import POSTERIORS

    return [("posterior", n) for n in POSTERIORS.names()] + [
        ("objective", n) for n in OBJECTIVES.names()
    ]


@pytest.mark.parametrize(("role", "name"), _parts())
def test_every_posterior_and_objective_loads_through_the_meta_device(
    tmp_path: Path, role: str, name: str, one_thread: None
) -> None:
    companions: dict[tuple[str, str], dict[str, Any]] = {  # parts that need another part
        ("posterior", "point"): {"objective": "ae"},
        ("objective", "beta_tc"): {"objective": {"name": "beta_tc", "dataset_size": 100}},
        ("objective", "vq"): {"model": "vqvae"},  # vector-quantised latents only
    }
    spec = {role: name, **companions.get((role, name), {})}
    model = tiny_model(spec.pop("model", "mlp"), **spec)
    loaded = pyvae.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.config == model.config
    state = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_sampler_config_cannot_build_without_bound(tmp_path: Path) -> None:
    from pyvae import samplers

    model = pyvae.build("mlp", input_shape=[4], latent_dim=2, hidden_dims=[8])
    header = {
        "format": "pyvae-sampler",
        "format_version": "1",
        "latent_dim": "2",
        "config": json.dumps({"name": "two_stage", "hidden_dims": [1] * 100_000}),
    }
    save_file({"shift": torch.zeros(2)}, tmp_path / "s.safetensors", metadata=header)
    with pytest.raises(samplers.SamplerError, match="builds more than 1032 modules"):
        samplers.load(tmp_path / "s.safetensors", model)
