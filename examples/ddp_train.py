"""Train a pyvae model on several processes with DistributedDataParallel.

Launch with torchrun, one process per GPU (or several CPU processes with the gloo backend)::

    torchrun --standalone --nproc_per_node=2 examples/ddp_train.py --model conv --epochs 1

pyvae models are ordinary ``nn.Module``s: wrap the model in DDP, call the wrapper for the forward
pass and ``model.loss`` (on the unwrapped model) for the ELBO terms. What to know:

* Build the model identically on every rank, or not: DDP broadcasts rank 0's parameters and
  buffers (learned priors, VampPrior pseudo-inputs, learned likelihood scales) when it wraps it.
* Seed each rank differently *after* building the model (``seed + rank``), so that the
  reparameterisation noise and a denoising model's corruption differ between ranks.
* Batch normalisation computes its statistics per process; on GPUs convert it with
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` (``--sync-bn``) for whole-batch statistics.
  SyncBatchNorm does not run on CPU tensors (gloo).
* ``DistributedSampler`` shards the data; call ``sampler.set_epoch(epoch)`` each epoch.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import pyvae
from pyvae.data import read_idx

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conv", help="a registered model name")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX images file")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images only")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    parser.add_argument("--batch-size", type=int, default=128, help="per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm (GPU only)")
    parser.add_argument("--out", type=Path, default=None, help="save the model here (rank 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    use_cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")  # env:// set by torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    images = read_idx(args.data).unsqueeze(1).float() / 255
    if args.limit is not None:
        images = images[: args.limit]
    dataset = TensorDataset(images)
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True)

    torch.manual_seed(args.seed)
    model = pyvae.build(args.model, input_shape=tuple(images.shape[1:])).to(device)
    if args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    torch.manual_seed(args.seed + rank)  # different noise on each rank
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)

    step = 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for (x,) in loader:
            x = x.to(device, non_blocking=True)
            out = ddp(x)  # the forward pass goes through the DDP wrapper
            terms = model.loss(x, out)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()  # gradients are averaged across ranks here
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == 1:
                stats = torch.stack([terms.loss, terms.recon.mean(), terms.kl.mean()]).detach()
                dist.all_reduce(stats)
                loss, recon, kl = (stats / world).tolist()
                if rank == 0:
                    print(
                        f"epoch {epoch} step {step}: loss {loss:.2f} recon {recon:.2f} kl {kl:.2f}"
                    )
            if args.max_steps is not None and step >= args.max_steps:
                break
        if args.max_steps is not None and step >= args.max_steps:
            break

    # every rank holds the same parameters: check it with a checksum
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
    checksums = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(checksums, checksum)
    in_sync = all(torch.equal(c, checksums[0]) for c in checksums)
    if rank == 0:
        print(f"done: {step} steps on {world} processes; parameters in sync: {in_sync}")
        if args.out is not None:
            model.save(args.out)
            print(f"saved to {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
