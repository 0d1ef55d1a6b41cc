"""DistributedDataParallel across 2 processes (gloo, CPU).

One spawn of two ranks trains every configuration in :data:`CONFIGS` (every model with every
prior, the likelihoods in turn, learned scales, batch norm, the denoising corruption; every
family: each posterior family, each objective, each model with labels) for two steps and
writes what it saw; the tests compare it with a single-process computation:

* DDP's gradients after one step equal the mean of the per-process gradients computed in one
  process with the same seeds and shards (batch norm: per-process statistics, as in DDP without
  SyncBatchNorm);
* ranks built with *different* seeds hold rank 0's parameters once wrapped (learned priors,
  VampPrior pseudo-inputs, learned likelihood scales are broadcast), and stay identical after the
  optimiser steps: nothing desynchronises silently.

The ``torchrun`` example (``examples/ddp_train.py``) is run too, for a few steps.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny import family_configs, family_id
from torch.nn.parallel import DistributedDataParallel

import pyvae

pytestmark = pytest.mark.slow  # starts processes

WORLD = 2
SHARD = 4  # examples per rank
SHAPE = (1, 8, 8)
REPO = Path(__file__).resolve().parents[1]
TINY: dict[str, dict[str, Any]] = {
    "mlp": {"input_shape": SHAPE, "hidden_dims": (16,), "latent_dim": 3},
    "conv": {
        "input_shape": SHAPE,
        "channels": (4, 4),
        "hidden_dim": 8,
        "latent_dim": 3,
        "batch_norm": True,
    },
    "denoising": {
        "backbone": "conv",
        "input_shape": SHAPE,
        "channels": (4,),
        "hidden_dim": 8,
        "latent_dim": 3,
        "batch_norm": True,
    },
    "ladder": {
        "input_shape": SHAPE,
        "latent_dims": (2, 1),
        "backbone": "conv",
        "channels": (4,),
        "hidden_dim": 8,
        "ladder_dim": 8,
        "batch_norm": True,
    },
    "vqvae": {"input_shape": SHAPE, "latent_dim": 3, "codebook_size": 8, "channels": (4, 4)},
}
PRIOR_CONFIG: dict[str, dict[str, Any]] = {"vamp": {"n_components": 3}, "mog": {"n_components": 3}}


def likelihood_spec(name: str) -> str | dict[str, Any]:
    """The likelihood by name, with a learned per-dimension scale where it has one."""
    parameters = inspect.signature(pyvae.LIKELIHOODS.get(name).__init__).parameters
    return {"name": name, "learn_scale": "per_dim"} if "learn_scale" in parameters else name


def _configs() -> list[dict[str, Any]]:
    likelihoods, priors = pyvae.list_likelihoods(), pyvae.list_priors()
    configs = []
    for model in pyvae.list_models():
        takes_prior = "prior" in inspect.signature(pyvae.MODELS.get(model)).parameters
        for i in range(max(len(likelihoods), len(priors)) if takes_prior else len(likelihoods)):
            prior = priors[i % len(priors)]
            config = {
                "name": model,
                "likelihood": likelihood_spec(likelihoods[i % len(likelihoods)]),
                **TINY.get(model, {"input_shape": SHAPE, "latent_dim": 3}),
            }
            if takes_prior:  # (the autoencoder has none)
                config["prior"] = {"name": prior, **PRIOR_CONFIG.get(prior, {})}
            configs.append(config)
    return configs


BASE_CONFIGS = _configs()
# every family: each posterior family, each objective, each model with labels (from the
# registries, via tests/tiny.py: parts registered later are trained here too)
FAMILY_CONFIGS = family_configs()
# the elbo's options with state or batch statistics: free bits, a KL schedule (its step buffer)
OPTION_CONFIGS = [
    {
        "name": "mlp",
        "likelihood": "bernoulli",
        "prior": {"name": "normal"},
        **TINY["mlp"],
        "objective": objective,
    }
    for objective in (
        {"name": "elbo", "free_bits": 0.2},
        {"name": "elbo", "schedule": {"name": "cyclical", "period": 2, "ratio": 0.5}},
    )
]
CONFIGS = BASE_CONFIGS + FAMILY_CONFIGS + OPTION_CONFIGS


def _config_id(config: dict[str, Any]) -> str:
    if config in FAMILY_CONFIGS:
        return "family-" + family_id(config)
    likelihood = config["likelihood"]
    likelihood = likelihood if isinstance(likelihood, str) else likelihood["name"]
    prior = config["prior"]["name"] if "prior" in config else "none"
    spec = config.get("objective")
    objective = (
        "" if spec is None else "-" + "+".join([spec["name"], *sorted(set(spec) - {"name"})])
    )
    return f"{config['name']}-{likelihood}-{prior}{objective}"


def _labels(config: dict[str, Any], batch: int) -> torch.Tensor | None:
    """The labels of a conditional model's shard (``0, 1, ...`` modulo its classes); a
    wrapper's config holds its backbone's."""
    backbone = config.get("backbone")
    classes = {**(backbone if isinstance(backbone, dict) else {}), **config}.get("num_classes")
    return None if classes is None else torch.arange(batch) % classes


def _batch(step: int) -> torch.Tensor:
    """The global batch of a step: WORLD shards of SHARD examples in [0, 1]."""
    return torch.rand(WORLD * SHARD, *SHAPE, generator=torch.Generator().manual_seed(100 + step))


def _shard(step: int, rank: int) -> torch.Tensor:
    return _batch(step)[rank * SHARD : (rank + 1) * SHARD]


def _noise_seed(step: int, rank: int) -> int:
    return 1000 * step + rank


def _worker(rank: int, store: str, out_dir: str, configs: list[dict[str, Any]]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        results = []
        for config in configs:
            torch.manual_seed(50 + rank)  # a different initialisation on each rank on purpose
            model = pyvae.build(config)
            ddp = DistributedDataParallel(model)
            initial = {k: v.clone() for k, v in model.state_dict().items()}
            optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
            grads = {}
            for step in range(2):
                x = _shard(step, rank)
                torch.manual_seed(_noise_seed(step, rank))
                y = _labels(config, x.shape[0])
                out = ddp(x) if y is None else ddp(x, y)
                terms = model.loss(x, out)
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                if step == 0:
                    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
                optimizer.step()
            final = {n: p.detach().clone() for n, p in model.named_parameters()}
            results.append({"initial": initial, "grads": grads, "final": final})
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    """What each rank saw, per configuration: ``results[rank][config_index]``."""
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out_dir / "store"), str(out_dir), CONFIGS), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def _reference_grads(config: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The mean over ranks of the gradients each rank's shard gives, in one process."""
    per_rank = []
    for rank in range(WORLD):
        model = pyvae.build(config)
        model.load_state_dict(state)
        x = _shard(0, rank)
        torch.manual_seed(_noise_seed(0, rank))
        y = _labels(config, x.shape[0])
        model.loss(x, model(x) if y is None else model(x, y)).loss.backward()
        per_rank.append({n: p.grad for n, p in model.named_parameters()})
    return {n: sum(g[n] for g in per_rank) / WORLD for n in per_rank[0]}


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=[_config_id(c) for c in CONFIGS])
def test_ddp_gradients_are_the_mean_of_per_process_gradients(
    index: int, ddp_results: list[list[dict[str, Any]]]
) -> None:
    config = CONFIGS[index]
    rank0, rank1 = ddp_results[0][index], ddp_results[1][index]
    # rank 1 was initialised with another seed: DDP gave it rank 0's parameters and buffers
    assert rank0["initial"].keys() == rank1["initial"].keys()
    for name in rank0["initial"]:
        torch.testing.assert_close(rank1["initial"][name], rank0["initial"][name], msg=name)
    expected = _reference_grads(config, rank0["initial"])
    assert rank0["grads"].keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(rank0["grads"][name], grad, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(rank1["grads"][name], grad, rtol=1e-5, atol=1e-6, msg=name)
    # ... and the ranks are still identical after two optimiser steps
    for name in rank0["final"]:
        assert torch.equal(rank0["final"][name], rank1["final"][name]), name
        if name in expected and expected[name].abs().sum() > 0:
            assert not torch.equal(rank0["final"][name], rank0["initial"][name]), name  # it moved


def test_configs_cover_every_model_likelihood_and_prior() -> None:
    assert {c["name"] for c in BASE_CONFIGS} == set(pyvae.list_models())
    assert {_config_id(c).split("-")[1] for c in BASE_CONFIGS} == set(pyvae.list_likelihoods())
    assert {c["prior"]["name"] for c in BASE_CONFIGS if "prior" in c} == set(pyvae.list_priors())


def test_configs_cover_every_family() -> None:
    ids = [family_id(c) for c in FAMILY_CONFIGS]
    for posterior in pyvae.list_posteriors():
        assert any(f"pos={posterior}" in i for i in ids), posterior
    for objective in pyvae.list_objectives():
        assert any(f"obj={objective}" in i for i in ids), objective
    assert {"mlp", "conv", "ae", "denoising"} <= {
        c["name"] for c in FAMILY_CONFIGS if family_id(c).endswith("-y")
    }


def test_sync_batchnorm_conversion_keeps_the_model() -> None:
    """SyncBatchNorm (GPU only) replaces every BatchNorm of a model and keeps its state dict and
    its pyvae methods."""
    model = pyvae.build("conv", input_shape=SHAPE, channels=(4, 4), hidden_dim=8, batch_norm=True)
    state = model.state_dict()
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(converted, pyvae.BaseVAE)
    kinds = {type(m) for m in converted.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert converted.state_dict().keys() == state.keys()
    converted.load_state_dict(state)


def test_torchrun_example(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        str(REPO / "examples" / "ddp_train.py"),
        "--model",
        "mlp",
        "--limit",
        "512",
        "--batch-size",
        "32",
        "--max-steps",
        "3",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: 3 steps on 2 processes; parameters in sync: True" in result.stdout
