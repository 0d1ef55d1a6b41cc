"""Run every benchmark and write the Markdown results page.

    python benchmarks/run.py                 # everything, writes docs/performance-results.md
    python benchmarks/run.py --quick         # fewer rounds, no compile, a small NLL run (smoke)
    python benchmarks/run.py --threads 1 --no-nll --out /tmp/results.md

Benchmarks are run by hand, never in CI; figures depend on the machine and on what else runs on
it, so the page records the machine, the torch version, the thread count and the load average.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/run.py`

import torch

from benchmarks import nll, train_step
from benchmarks.common import REPO, load_average, machine

NOTES = """\
## Reading these figures

- Variants in one group are timed alternately in the same process, so their **ratios** are
  comparable even on a busy machine; absolute times move with the machine's load (the load
  average is recorded above). The spread column shows how much rounds varied: differences smaller
  than it are noise.
- **Threads.** On a machine whose cores are shared with other work, more intra-op threads can be
  much slower: on this 2-core VM with other jobs running, two threads made a small convolution
  (batch 32, 8 x 8 images) tens of times slower than one thread (OpenMP threads waiting for a busy
  core). Set `torch.set_num_threads` to the number of cores that are really free (`--threads`).
- **What pyvae adds in eager mode** (largest, relatively, for the small `mlp`): the value checks
  and Python. With checks on, `model.loss` reads the step's values back once (the minimum and
  maximum of x for NaN and the likelihood's support, the labels' range, the loss's finiteness,
  stacked into one `tolist`); `forward` reads nothing (shapes, dtypes and devices only). With
  checks off (`model.validate_args = False`, the row *validate_args off*) a step reads nothing.
  The KL of the Gaussian posterior against the `normal` and `learned_normal` priors is pyvae's
  fused closed form (`pyvae.kl`, registered with torch's `register_kl`), for a user's own
  `Independent(Normal)` posterior too (the row *user's BaseVAE subclass*). What remains is
  Python: the distribution objects, the structural checks, the extra module calls.
- **Compiled**: forward and loss are compiled together (`fullgraph=True`) unless the row says
  otherwise (*loss only*: `torch.compile(model.loss)`, the networks in eager mode; *networks
  only*: `module.compile()` on the encoder and decoder). pyvae's value checks and distribution
  objects disappear from the compiled graph. *saw a short batch*: the compiled step also ran
  one batch of 64 (an epoch's last, short batch) before timing: by default (`dynamic=None`)
  torch recompiles with a dynamic batch size; with `dynamic=False` it keeps one static graph
  per batch size. The `compile s` of the second variant of a group is shorter because inductor
  reuses the kernels it compiled for the first (its caches).
- **Evaluation memory**: `model.log_likelihood` decodes at most `chunk_size` samples at a time
  (all images' samples together), and keeps a running log-sum-exp per image (since
  2026-11-22 03:15; the figures below still kept all k x B log-weights); the loop decodes k
  samples at a time. Both stay far below decoding everything at once.
- **Peak memory is a noisy measure on CPU.** It is the process's resident memory, which includes
  what the C allocator keeps after tensors are freed. Earlier runs of pyvae's evaluation at
  k=1000 (the same computation, with small changes to the measurement or to the Bernoulli
  `log_prob`) peaked anywhere between 64 and 2,475 MiB above the baseline on this machine, and
  the run of 2026-11-22 02:42 UTC at about 3.5 GiB for both k: the column is not a measure of the
  algorithm. The evaluation's live tensors are bounded by `chunk_size`: each (4096, 784) float32
  tensor of a chunk is 12.3 MiB, and the k x B log-weights are 7.6 MiB at k=1000 and 38 MiB at
  k=5000 for 2,000 images. What grows is glibc's heap: freed chunk tensors stay in it, pinned
  by the small per-chunk log-weights allocated between them (the peak grows with k: 93 MiB at
  k=4, 168 MiB at k=20); with `MALLOC_MMAP_THRESHOLD_=131072` in the environment (large blocks
  always mapped, and unmapped when freed) the k=20 run peaked at 55 MiB.
- No GPU was available when these figures were taken: CUDA figures (float16/bfloat16 autocast,
  compile modes with CUDA graphs) are not measured here.
"""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _step_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            r["variant"],
            f"{r['ms']:.2f}",
            f"{r['spread']:.2f}",
            f"{r['images_per_s']:.0f}",
            f"{r['ratio']:.3f}",
            f"{r['compile_s']:.0f}" if r["compile_s"] else "",
        ]
        for r in result["rows"]
    ]


def _ratio(result: dict[str, Any], variant: str) -> float | None:
    return next((r["ratio"] for r in result.get("rows", []) if r["variant"] == variant), None)


def _summary(steps: dict[str, Any], cpu_steps: dict[str, Any]) -> list[str]:
    """One line per model: the ratios the goals are about."""
    lines = ["Summary (ratio of time per step to the hand-written model; < 1 is faster):", ""]
    for name, result in steps.items():
        parts = []
        for label, variant in (
            ("eager", "pyvae, eager"),
            ("eager, checks off", "pyvae, eager, validate_args off"),
            ("a user's BaseVAE subclass, eager", "user's BaseVAE subclass, eager"),
        ):
            wall = _ratio(result, variant)
            cpu = _ratio(cpu_steps.get(name, {}), variant)
            if wall is not None:
                text = f"{label} {wall:.3f}"
                parts.append(text + (f" (CPU time {cpu:.3f})" if cpu is not None else ""))
        compiled = _ratio(result, "pyvae, compiled")
        if compiled is not None:
            parts.append(f"compiled vs hand-written compiled {compiled:.3f}")
            # the compiled group also times the eager hand-written model: a same-group ratio
            group = [r for r in result["rows"] if r["baseline"] == "hand-written, compiled"]
            eager = next(r["ms"] for r in group if r["variant"] == "hand-written, eager")
            comp = next(r["ms"] for r in group if r["variant"] == "pyvae, compiled")
            parts.append(f"compiled pyvae vs eager hand-written {comp / eager:.3f}")
        for label, variant in (
            ("compiled loss only", "pyvae, compiled loss only"),
            ("compiled networks only", "pyvae, compiled networks only"),
            ("compiled after a short batch", "pyvae, compiled, saw a short batch"),
            (
                "compiled dynamic=False after a short batch",
                "pyvae, compiled dynamic=False, saw a short batch",
            ),
        ):
            ratio = _ratio(result, variant)
            if ratio is not None:
                parts.append(f"{label} {ratio:.3f}")
        lines.append(f"- `{name}`: " + "; ".join(parts) + ".")
    return [*lines, ""]


NLL_LABELS = {
    "chunked": "pyvae (chunked)",
    "loop": "per-image loop",
}
STEP_HEADER = ["variant", "ms / step", "spread ms", "images / s", "vs hand-written", "compile s"]


def render(
    info: dict[str, str],
    steps: dict[str, Any],
    overhead: dict[str, float],
    nll_rows: list[dict[str, Any]],
    settings: dict[str, Any],
    cpu_steps: dict[str, Any] | None = None,
    graph_ops: dict[str, Any] | None = None,
) -> str:
    out = [
        "# Performance results",
        "",
        "<!-- generated by `python benchmarks/run.py`; do not edit by hand -->",
        "",
    ]
    out += _table(["machine", ""], [[k, v] for k, v in info.items()])
    out += [""]
    out += [
        "## Training step: pyvae against hand-written PyTorch",
        "",
        "One step = `zero_grad`, forward, loss (negative ELBO, Bernoulli likelihood, closed-form "
        "KL), `backward`, `Adam.step`; batch 128 of real MNIST images (1, 28, 28). The "
        "hand-written models (`benchmarks/train_step.py`) have exactly the architecture and "
        "loss of pyvae's `mlp` and `conv` defaults and start from the same weights (the two "
        "losses agree on the same noise before timing). Variants in the same group are timed "
        "alternately in one process: "
        f"{settings['rounds']} rounds of {settings['steps']} steps each; the median time per "
        "step, the spread (max - min over rounds) and the ratio to the group's hand-written "
        "model. Compiled variants compile forward + loss with `torch.compile(fullgraph=True)` "
        "and call `backward()` on its output; `compile s` is the first call (with inductor's "
        "on-disk cache warm it is a few seconds; a first compile on this machine took 14 to 26 "
        "s for these models).",
        "",
    ]
    out += _summary(steps, cpu_steps or {})
    for name, result in steps.items():
        out += [f"### `{name}`", ""]
        out += _table(STEP_HEADER, _step_rows(result))
        fastest = min(result["rows"], key=lambda r: r["ms"])
        pyvae_rows = [r for r in result["rows"] if r["variant"].startswith("pyvae")]
        best_pyvae = min(pyvae_rows, key=lambda r: r["ms"])
        out += [
            "",
            f"Fastest overall: {fastest['variant']} ({fastest['ms']:.2f} ms / step); fastest "
            f"pyvae path: {best_pyvae['variant']} ({best_pyvae['ms']:.2f} ms / step).",
            "",
        ]
    if cpu_steps:
        out += [
            "### Eager variants in CPU time",
            "",
            "The eager groups again, timed in this process's CPU time (`time.process_time`, one "
            "thread) rather than wall-clock time, so that time taken by other processes on the "
            f"busy machine does not count; {settings.get('cpu_rounds')} rounds.",
            "",
        ]
        for name, result in cpu_steps.items():
            out += [f"`{name}`:", ""]
            out += _table(STEP_HEADER[:-1], [row[:-1] for row in _step_rows(result)])
            out += [""]
    if overhead:
        out += [
            "### What pyvae adds to a step (`mlp`, batch 128, microseconds per call)",
            "",
        ]
        out += _table(["piece", "µs"], [[k, f"{v:.0f}"] for k, v in overhead.items()])
        out += [""]
    if graph_ops:
        out += [
            "### The compiled graphs (a count: independent of the machine's load)",
            "",
            "ATen operations of the compiled forward + loss and of its backward "
            "(`torch.compile(fullgraph=True)` through `aot_autograd`, before inductor fuses "
            "them), pyvae against the hand-written model; the other rows are pyvae minus "
            "hand-written for each operation that differs.",
            "",
        ]
        for name, parts in graph_ops.items():
            rows = [[part, op, str(n)] for part, ops in parts.items() for op, n in ops.items()]
            out += [f"`{name}`:", ""]
            out += _table(["graph", "operation", "count"], rows)
            out += [""]
    if nll_rows:
        out += [
            "## Importance-sampled NLL",
            "",
            f"`-log p(x)` estimated with k importance samples for {nll_rows[0]['n']} MNIST test "
            "images, pyvae's default `mlp` (briefly trained). `pyvae` is "
            f"`model.log_likelihood(x, k=k)` on all images at once (chunk_size "
            f"{settings['chunk_size']}: at most that many samples decoded at a time); `loop` is "
            "the straightforward per-image loop (`benchmarks/nll.py`: each image's k samples "
            "decoded in one batch). Peak memory: the highest resident memory during a warm-up "
            "call of the same shapes and the timed call, minus the resident memory before them "
            "(a fresh process per row). " + settings.get("nll_measured", ""),
            "",
        ]
        rows = [
            [
                NLL_LABELS[r["impl"]],
                str(r["k"]),
                f"{r['seconds']:.1f}",
                f"{r['images_per_s']:.1f}",
                f"{r['peak_extra_mib']:.0f}",
                f"{r['nll']:.2f}",
            ]
            for r in nll_rows
        ]
        out += _table(["implementation", "k", "seconds", "images / s", "peak MiB", "NLL"], rows)
        all_at_once = {r["k"]: r["n"] * r["k"] * 784 * 4 / 2**20 for r in nll_rows}
        out += [
            "",
            "For scale: decoding all k samples of all images at once would need the logits "
            "alone, "
            + ", ".join(f"{mib:,.0f} MiB for k={k}" for k, mib in sorted(all_at_once.items()))
            + ".",
            "",
        ]
    out += [NOTES]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance-results.md")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and fast")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-nll", action="store_true")
    parser.add_argument("--no-steps", action="store_true", help="skip the training-step timing")
    parser.add_argument(
        "--cpu-time-rounds",
        type=int,
        default=15,
        help="also time the eager variants in process CPU time (1 thread only; 0: skip)",
    )
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--modes", nargs="+", default=["default"], help="torch.compile modes")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--nll-n", type=int, default=nll.N_EVAL)
    parser.add_argument("--nll-k", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=None, help="also save the raw results here")
    parser.add_argument("--from-json", type=Path, default=None, help="only render saved results")
    parser.add_argument(
        "--nll-from-json", type=Path, default=None, help="reuse the NLL rows of a saved run"
    )
    args = parser.parse_args()
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        args.out.write_text(render(**saved) + "\n")
        print(f"wrote {args.out}")
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.no_compile, args.nll_n, args.nll_k = 3, True, 100, [100]
    info = {"measured (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), **machine()}
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    steps_per_round = {"mlp": 20, "conv": 5} if not args.quick else {"mlp": 5, "conv": 2}
    settings = {
        "rounds": args.rounds,
        "steps": ", ".join(f"{steps_per_round[m]} ({m})" for m in args.models),
        "chunk_size": args.chunk_size,
    }

    steps: dict[str, Any] = {}
    cpu_steps: dict[str, Any] = {}
    overhead: dict[str, float] = {}
    graph_ops: dict[str, Any] = {}
    if not args.no_steps:
        print("training step", flush=True)
        steps = train_step.run(
            tuple(args.models),
            compile_=not args.no_compile,
            modes=args.modes,
            rounds=args.rounds,
            steps=steps_per_round,
            log=lambda s: print(s, flush=True),
        )
        overhead = train_step.overhead("mlp", repeats=200 if args.quick else 2000)
        graph_ops = {name: train_step.compiled_graph_ops(name) for name in args.models}
        if args.cpu_time_rounds and torch.get_num_threads() == 1:
            print("training step, eager, process CPU time", flush=True)
            cpu_steps = train_step.run(
                tuple(args.models),
                compile_=False,
                rounds=3 if args.quick else args.cpu_time_rounds,
                steps=steps_per_round,
                log=lambda s: print(s, flush=True),
                clock=time.process_time,
            )
            settings["cpu_rounds"] = 3 if args.quick else args.cpu_time_rounds

    nll_rows: list[dict[str, Any]] = []
    if args.nll_from_json is not None:
        saved = json.loads(args.nll_from_json.read_text())
        nll_rows = saved["nll_rows"]
        for key in ("cpu", "torch", "torch threads"):
            assert saved["info"][key] == info[key], f"--nll-from-json: another {key}"
        settings["nll_measured"] = (
            f"(measured in an earlier run of the same command on the same machine, "
            f"load average {saved['info']['load average (1, 5, 15 min) at start']} at its start)"
        )
    elif not args.no_nll:
        print("importance-sampled NLL", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "mlp.pt"
            nll.prepare(weights, steps=50 if args.quick else 400)
            for k in args.nll_k:
                for impl in nll.IMPLEMENTATIONS:
                    row = nll.run_in_subprocess(
                        impl, k, weights, args.nll_n, args.chunk_size, torch.get_num_threads()
                    )
                    print(f"  {impl} k={k}: {row}", flush=True)
                    nll_rows.append(row)

    info["load average (1, 5, 15 min) at the end"] = load_average()
    results = {
        "info": info,
        "steps": steps,
        "cpu_steps": cpu_steps,
        "overhead": overhead,
        "graph_ops": graph_ops,
        "nll_rows": nll_rows,
        "settings": settings,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    text = render(**results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
