"""Reliability under hostile and careless use: configs x inputs x checkpoint damage.

Hypothesis drives the damage (the fixed "ci" profile of conftest.py keeps it fast and
deterministic); the memory bounds are measured in child processes (their peak resident size), so
that one test's allocations do not hide another's.
"""

from __future__ import annotations

import functools
import json
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
    meta = model.to("meta")
    with pytest.raises(ValueError, match="meta device, which holds no values .* value checks"):
        meta(torch.empty(3, 4, device="meta"))
    pyvae.set_validate_args(False)
    try:  # with value checks off the meta device traces shapes (see test_devices.py)
        assert meta(torch.empty(3, 4, device="meta")).params.shape == (3, 4)
    finally:
        pyvae.set_validate_args(True)
