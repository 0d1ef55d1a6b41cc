"""Training-step throughput of pyvae's ``mlp`` and ``conv`` against hand-written PyTorch models of
exactly the same architecture and loss (MNIST-shaped, batch 128, real MNIST images).

A step is ``zero_grad``, forward, loss, ``backward``, ``Adam.step``. The hand-written models copy
the pyvae model's weights, so both compute the same function (checked before timing: same loss
for the same noise). The variants of each model are timed in the same process, alternating
(:func:`benchmarks.common.alternate`), several rounds; the tables give the median time per step
and the ratio to the hand-written model.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

import pyvae
from benchmarks.common import alternate, median, mnist_images

BATCH = 128


# -- the hand-written models ---------------------------------------------------------
class HandMLP(nn.Module):
    """784 -> 512 -> 256 -> (loc, log_var) of 16; 16 -> 256 -> 512 -> 784 logits (pyvae's mlp)."""

    def __init__(self, latent: int = 16) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU()
        )
        self.head = nn.Linear(256, 2 * latent)
        self.dec = nn.Sequential(
            nn.Linear(latent, 256),
            nn.ReLU(),
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, 784),
            nn.Unflatten(1, (1, 28, 28)),
        )


class HandConv(nn.Module):
    """Conv 1->32->64 (4x4, stride 2, padding 1), dense 3136 -> 256 -> (loc, log_var) of 16, and
    the mirror with transposed convolutions (pyvae's conv defaults)."""

    def __init__(self, latent: int = 16) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 256),
            nn.ReLU(),
        )
        self.head = nn.Linear(256, 2 * latent)
        self.dec = nn.Sequential(
            nn.Linear(latent, 256),
            nn.ReLU(),
            nn.Linear(256, 64 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),
        )


def hand_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The negative ELBO as one writes it by hand: Bernoulli logits, closed-form Gaussian KL."""
    loc, log_var = model.head(model.enc(x)).chunk(2, dim=-1)
    log_var = log_var.clamp(-30.0, 20.0)
    std = torch.exp(0.5 * log_var)
    z = loc + std * torch.randn_like(std)
    logits = model.dec(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (log_var.exp() + loc.pow(2) - 1.0 - log_var).sum(1)
    return (recon + kl).mean()


class UserMLP(pyvae.BaseVAE):
    """A user's own model: a ``BaseVAE`` subclass whose ``encode`` returns torch's
    ``Independent(Normal(loc, scale), 1)`` (no pyvae posterior head), with the layers of pyvae's
    ``mlp`` default: the KL against pyvae's prior types takes the fused closed form too."""

    def __init__(self, latent: int = 16) -> None:
        super().__init__(input_shape=(1, 28, 28), latent_dim=latent)
        self.enc = HandMLP(latent).enc
        self.head = nn.Linear(256, 2 * latent)
        self.dec = HandMLP(latent).dec

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        loc, log_var = self.head(self.enc(x)).chunk(2, dim=-1)
        scale = torch.exp(0.5 * log_var.clamp(-30.0, 20.0))
        return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.dec(z)


def pyvae_loss(model: pyvae.BaseVAE, x: torch.Tensor) -> torch.Tensor:
    return model.loss(x, model(x)).loss


HAND = {"mlp": HandMLP, "conv": HandConv}


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    src_params, dst_params = list(src.parameters()), list(dst.parameters())
    assert len(src_params) == len(dst_params)
    with torch.no_grad():
        for a, b in zip(src_params, dst_params, strict=True):
            assert a.shape == b.shape, (a.shape, b.shape)
            b.copy_(a)


def check_same_function(name: str) -> float:
    """The absolute difference of the two losses on the same batch with the same noise."""
    torch.manual_seed(0)
    model = pyvae.build(name)
    hand = HAND[name]()
    copy_weights(model, hand)
    x = mnist_images(BATCH)
    torch.manual_seed(1)
    a = pyvae_loss(model, x)
    torch.manual_seed(1)
    b = hand_loss(hand, x)
    diff = (a - b).abs().item()
    assert diff < 1e-3 * abs(b.item()), (name, a.item(), b.item())
    return diff


# -- the variants -------------------------------------------------------------------
@dataclass
class Variant:
    label: str
    impl: str  # "pyvae", "hand" or "user" (a user's BaseVAE subclass, mlp only)
    compiled: bool = False
    mode: str | None = None  # torch.compile mode
    channels_last: bool = False
    validate: bool = True
    target: str = "step"  # what is compiled: "step" (forward + loss), "loss", "modules"
    dynamic: bool | None = None  # torch.compile's dynamic=
    short_batch: bool = False  # also run a short last batch (64) before timing
    compile_seconds: float = 0.0
    step: Callable[[], None] = field(default=lambda: None, repr=False)


def build_variant(name: str, variant: Variant, batches: list[torch.Tensor]) -> Variant:
    torch.manual_seed(0)
    reference = pyvae.build(name)
    model: nn.Module
    if variant.impl == "user":
        model = UserMLP()
        copy_weights(reference, model)
        loss_fn = pyvae_loss  # type: ignore[assignment]
    elif variant.impl == "pyvae":
        model = copy.deepcopy(reference)
        loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = pyvae_loss  # type: ignore[assignment]
    else:
        model = HAND[name]()
        copy_weights(reference, model)
        loss_fn = hand_loss
    memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    data = [b.contiguous(memory_format=memory_format) for b in batches]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def forward_loss(x: torch.Tensor) -> torch.Tensor:
        return loss_fn(model, x)

    fn: Callable[[torch.Tensor], torch.Tensor] = forward_loss
    if variant.compiled and variant.target == "step":
        fn = torch.compile(forward_loss, mode=variant.mode, fullgraph=True, dynamic=variant.dynamic)
    elif variant.compiled and variant.target == "loss":  # pyvae only: forward stays eager
        compiled_loss = torch.compile(
            model.loss, mode=variant.mode, fullgraph=True, dynamic=variant.dynamic
        )

        def fn(x: torch.Tensor) -> torch.Tensor:
            return compiled_loss(x, model(x)).loss

    elif variant.compiled and variant.target == "modules":  # the networks, not the loss
        for sub in ("encoder", "decoder", "enc", "dec"):
            module = getattr(model, sub, None)
            if isinstance(module, nn.Module):
                module.compile(mode=variant.mode, dynamic=variant.dynamic)
    counter = [0]

    def step() -> None:
        x = data[counter[0] % len(data)]
        counter[0] += 1
        optimizer.zero_grad(set_to_none=True)
        loss = fn(x)
        loss.backward()
        optimizer.step()

    if variant.impl != "hand" and not variant.validate:
        model.validate_args = False  # this model's checks only (the global switch stays on)
    variant.step = step
    if variant.compiled:  # compile now, outside the timing
        start = time.perf_counter()
        variant.step()
        if variant.short_batch:  # the last, short batch of an epoch: a second shape
            short = data[0][: BATCH // 2]
            optimizer.zero_grad(set_to_none=True)
            fn(short).backward()
        variant.compile_seconds = time.perf_counter() - start
    return variant


def variants_for(name: str, *, compile_: bool, modes: list[str]) -> list[list[Variant]]:
    """Groups of variants timed together (alternating)."""
    groups = [
        [
            Variant("hand-written, eager", "hand"),
            Variant("pyvae, eager", "pyvae"),
            Variant("pyvae, eager, validate_args off", "pyvae", validate=False),
        ]
    ]
    if name == "mlp":  # a user's BaseVAE subclass with torch's Independent(Normal) posterior
        groups[0].append(Variant("user's BaseVAE subclass, eager", "user"))
    if name == "conv":
        groups.append(
            [
                Variant("hand-written, eager, channels_last", "hand", channels_last=True),
                Variant("pyvae, eager, channels_last", "pyvae", channels_last=True),
            ]
        )
    if compile_:
        for mode in modes:
            suffix = "" if mode == "default" else f" mode={mode}"
            m = None if mode == "default" else mode
            groups.append(
                [
                    Variant(f"hand-written, compiled{suffix}", "hand", compiled=True, mode=m),
                    Variant(f"pyvae, compiled{suffix}", "pyvae", compiled=True, mode=m),
                    Variant("hand-written, eager", "hand"),
                ]
            )
        # what to compile: the whole forward + loss (above), the loss only, the networks only
        groups.append(
            [
                Variant("hand-written, compiled", "hand", compiled=True),
                Variant("pyvae, compiled loss only", "pyvae", compiled=True, target="loss"),
                Variant("pyvae, compiled networks only", "pyvae", compiled=True, target="modules"),
                Variant(
                    "hand-written, compiled networks only", "hand", compiled=True, target="modules"
                ),
            ]
        )
        # an epoch's last, short batch: a second shape (automatic dynamic shapes or two graphs)
        groups.append(
            [
                Variant(
                    "hand-written, compiled, saw a short batch", "hand", True, short_batch=True
                ),
                Variant("pyvae, compiled, saw a short batch", "pyvae", True, short_batch=True),
                Variant(
                    "hand-written, compiled dynamic=False, saw a short batch",
                    "hand",
                    True,
                    dynamic=False,
                    short_batch=True,
                ),
                Variant(
                    "pyvae, compiled dynamic=False, saw a short batch",
                    "pyvae",
                    True,
                    dynamic=False,
                    short_batch=True,
                ),
            ]
        )
        if name == "conv":
            groups.append(
                [
                    Variant("hand-written, compiled, channels_last", "hand", True, None, True),
                    Variant("pyvae, compiled, channels_last", "pyvae", True, None, True),
                ]
            )
    return groups


def run(
    names: tuple[str, ...] = ("mlp", "conv"),
    *,
    compile_: bool = True,
    modes: list[str] | None = None,
    rounds: int = 7,
    steps: dict[str, int] | None = None,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Time every variant; returns ``{model: {"rows": [...], "max_abs_loss_diff": float}}``."""
    modes = modes or ["default"]
    steps = steps or {"mlp": 20, "conv": 5}
    images = mnist_images(BATCH * 8)
    batches = list(images.split(BATCH))
    results: dict[str, Any] = {}
    for name in names:
        diff = check_same_function(name)
        rows = []
        for group in variants_for(name, compile_=compile_, modes=modes):
            built = [build_variant(name, v, batches) for v in group]
            times = alternate(
                {v.label: v.step for v in built},
                steps=steps.get(name, 10),
                rounds=rounds,
                clock=clock,
            )
            hand = next(v for v in built if v.impl == "hand")
            hand_median = median(times[hand.label])
            for v in built:
                t = median(times[v.label])
                rows.append(
                    {
                        "variant": v.label,
                        "ms": 1e3 * t,
                        "spread": 1e3 * (max(times[v.label]) - min(times[v.label])),
                        "images_per_s": BATCH / t,
                        "ratio": t / hand_median,
                        "baseline": hand.label,
                        "compile_s": v.compile_seconds,
                    }
                )
                log(f"  {name}: {v.label}: {1e3 * t:.2f} ms/step ({t / hand_median:.3f}x)")
            torch._dynamo.reset()
        results[name] = {"rows": rows, "max_abs_loss_diff": diff}
    return results


def overhead(name: str = "mlp", repeats: int = 2000) -> dict[str, float]:
    """Microseconds per call of the pieces pyvae adds to a step, batch 128."""
    torch.manual_seed(0)
    model = pyvae.build(name)
    x = mnist_images(BATCH)
    out = model(x)

    def timed(fn: Callable[[], object]) -> float:
        for _ in range(50):
            fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1e6 * (time.perf_counter() - start) / repeats

    result = {
        "check_input (value checks on)": timed(lambda: model.check_input(x)),
        "likelihood support check": timed(lambda: model.likelihood.check_support(x)),
        "prior() (build p(z))": timed(model.prior),
        "posterior head (Linear + distribution)": timed(lambda: model.head(torch.zeros(BATCH, 256)))
        if name == "mlp"
        else 0.0,
        "loss() from out, value checks on": timed(lambda: model.loss(x, out)),
    }
    pyvae.set_validate_args(False)
    try:
        result["check_input (value checks off)"] = timed(lambda: model.check_input(x))
        result["loss() from out, value checks off"] = timed(lambda: model.loss(x, out))
    finally:
        pyvae.set_validate_args(True)
    result.update(fixed_cost())
    return result


class _TinyHand(nn.Module):
    """16 -> 8 -> (loc, log_var) of 2; 2 -> 8 -> 16 logits: pyvae's mlp with hidden_dims=(8,)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        self.head = nn.Linear(8, 4)
        self.dec = nn.Sequential(
            nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 16), nn.Unflatten(1, (1, 4, 4))
        )


def fixed_cost(rounds: int = 15, steps: int = 200) -> dict[str, float]:
    """The time pyvae adds to every training step whatever the model's size, in microseconds:
    a tiny model (batch 8 of 4x4 images, where the arithmetic costs almost nothing) against the
    same hand-written model, in this thread's CPU time (``time.thread_time``: other processes on
    a busy machine do not count), alternating, median over rounds. The ratio to a real model's
    step is then ``hand / (hand + this)``."""
    torch.manual_seed(0)
    model = pyvae.build("mlp", input_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,))
    hand = _TinyHand()
    copy_weights(model, hand)
    x = (torch.rand(8, 1, 4, 4) > 0.5).float()

    def stepper(module: nn.Module, loss: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss(x).backward()
            optimizer.step()

        return step

    variants = {
        "hand": (stepper(hand, lambda v: hand_loss(hand, v)), True),
        "on": (stepper(model, lambda v: pyvae_loss(model, v)), True),
        "off": (stepper(model, lambda v: pyvae_loss(model, v)), False),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for key, (step, checks) in variants.items():
            pyvae.set_validate_args(checks)
            try:
                for _ in range(10):
                    step()
                start = time.thread_time()
                for _ in range(steps):
                    step()
                times[key].append(1e6 * (time.thread_time() - start) / steps)
            finally:
                pyvae.set_validate_args(True)
    hand_us = median(times["hand"])
    return {
        "fixed cost per step, value checks on (tiny model, pyvae - hand-written)": median(
            times["on"]
        )
        - hand_us,
        "fixed cost per step, value checks off (tiny model, pyvae - hand-written)": median(
            times["off"]
        )
        - hand_us,
        "the tiny hand-written step itself": hand_us,
    }


def compiled_graph_ops(name: str = "mlp") -> dict[str, dict[str, int]]:
    """The ATen operations of the compiled forward + loss and of its backward, pyvae against the
    hand-written model (``torch.compile(fullgraph=True)`` through ``aot_autograd``, no inductor:
    the graphs inductor then fuses). A count, so it does not depend on the machine's load.
    Returns ``{"forward": {...}, "backward": {...}}`` with the totals and each differing op as
    ``"op": pyvae - hand``."""
    from torch._functorch.aot_autograd import aot_module_simplified

    def capture(store: dict[str, Counter[str]]) -> Callable[..., Any]:
        def graph_counter(part: str) -> Callable[..., Any]:
            def compiler(gm: torch.fx.GraphModule, inputs: Any) -> Callable[..., Any]:
                store[part] = Counter(
                    str(n.target) for n in gm.graph.nodes if n.op == "call_function"
                )
                return gm.forward

            return compiler

        def backend(gm: torch.fx.GraphModule, inputs: Any) -> Callable[..., Any]:
            return aot_module_simplified(  # type: ignore[no-any-return]
                gm,
                inputs,
                fw_compiler=graph_counter("forward"),
                bw_compiler=graph_counter("backward"),
            )

        return backend

    torch.manual_seed(0)
    reference = pyvae.build(name)
    hand = HAND[name]()
    copy_weights(reference, hand)
    x = mnist_images(BATCH)
    counts = {}
    for label, model, loss in (("pyvae", reference, pyvae_loss), ("hand", hand, hand_loss)):
        store: dict[str, Counter[str]] = {}
        fn = torch.compile(
            lambda v, m=model, f=loss: f(m, v), backend=capture(store), fullgraph=True
        )
        fn(x).backward()
        counts[label] = store
    torch._dynamo.reset()
    out: dict[str, dict[str, int]] = {}
    for part in ("forward", "backward"):
        a, b = counts["pyvae"][part], counts["hand"][part]
        row = {"pyvae ops": sum(a.values()), "hand-written ops": sum(b.values())}
        row.update({op: a[op] - b[op] for op in sorted(set(a) | set(b)) if a[op] != b[op]})
        out[part] = row
    return out
