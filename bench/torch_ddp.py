#!/usr/bin/python3
"""bench/torch_ddp.py — PyTorch DistributedDataParallel (gloo) twin of bench/bench_ddp.c.

    /usr/bin/python3 bench/torch_ddp.py --config gru_cls|char_lm|transformer --world N
        [--bucket-mb 25] [--quick] [--warmup N] [--rounds N] [--round-s S] [--seed N]

N processes (torch.multiprocessing, spawned), each torch.set_num_threads(1) and pinned to
CPU rank % ncpu (as `mpirun --bind-to core` pins tapegrad's ranks), train the model of
bench/torch_models.py on the same global batch B (the config's batch), each on its
contiguous B/N share, with Adam; DDP averages the gradients over gloo (bucket_cap_mb =
--bucket-mb; DDP's first bucket is 1 MB). --world 1 is the baseline: one process, the whole
batch, no DDP, no process group.

Measured on rank 0, every rank running the same number of steps:
  ms          the best round's wall-clock ms per training step (ms_median: the median round);
  ms_nosync   the same step under `with ddp.no_sync():` (no communication at all);
  allreduce_ms  one all-reduce of all gradients at once (a flat tensor of every parameter's
              values, gloo, median of several), i.e. the communication if nothing overlapped;
  exposed_ms  ms - ms_nosync: what communication adds to the step;
  hidden      1 - exposed_ms / allreduce_ms (clamped to [0, 1]): the share of the all-reduce
              time hidden behind backward, estimated (DDP does not report its waits).
The result line has the keys of torch_models.py plus world, global_batch, samples_per_s,
params, bucket_mb and the ones above; loss0 is the first step's loss averaged over the ranks
(the loss over the global batch: equal to the one-process loss0 up to rounding).
"""
import argparse
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_models  # noqa: E402  (the models, data and peak_rss_kb)

GLOBAL_BATCH = {"gru_cls": 64, "char_lm": 32, "transformer": 32}


def timed_rounds(torch, dist, step, args, world):
    """Warm-up, then `rounds` rounds of the same number of steps on every rank (rank 0
    decides it from its warm-up); returns (sorted ms per step of each round, last loss)."""
    last = 0.0
    for _ in range(max(1, args.warmup - 1)):
        t0 = time.perf_counter()
        step()
        last = time.perf_counter() - t0
    per_round = torch.tensor([max(1, int(-(-args.round_s // max(last, 1e-9))))])
    if world > 1:
        dist.broadcast(per_round, 0)
    n = int(per_round.item())
    ms, loss = [], 0.0
    for _ in range(args.rounds):
        if world > 1:
            dist.barrier()  # no_sync steps do not synchronise the ranks by themselves
        t0 = time.perf_counter()
        for _ in range(n):
            loss = step()
        ms.append(1e3 * (time.perf_counter() - t0) / n)
    return sorted(ms), n, loss


def worker(rank, args, port):
    import torch
    import torch.distributed as dist
    world = args.world
    torch.set_num_threads(1)
    try:
        os.sched_setaffinity(0, {rank % os.cpu_count()})
    except (AttributeError, OSError):
        pass
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)
        from torch.nn.parallel import DistributedDataParallel as DDP
        holder = {}

        def wrap(model):
            holder["ddp"] = DDP(model, bucket_cap_mb=args.bucket_mb)
            return holder["ddp"]
        step = torch_models.build(torch, args.config, args.seed, shard=(rank, world), wrap=wrap)
    else:
        step = torch_models.build(torch, args.config, args.seed)
    params = sum(p.numel() for p in step.model.parameters())

    loss0 = torch.tensor([step()])
    if world > 1:
        dist.all_reduce(loss0)
        loss0 /= world
    ms, per_round, loss = timed_rounds(torch, dist, step, args, world)
    extra = ""
    if world > 1:
        ddp = holder["ddp"]

        def step_nosync():
            with ddp.no_sync():
                return step()
        ms_nosync, _, _ = timed_rounds(torch, dist, step_nosync, args, world)
        flat = torch.zeros(params)
        reps = []
        for _ in range(3 + (2 if args.quick else 10)):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            reps.append(1e3 * (time.perf_counter() - t0))
        allreduce_ms = statistics.median(reps[3:])
        exposed = ms[0] - ms_nosync[0]
        hidden = min(1.0, max(0.0, 1.0 - exposed / allreduce_ms)) if allreduce_ms > 0 else 0.0
        extra = (f" ms_nosync={ms_nosync[0]:.4f} allreduce_ms={allreduce_ms:.4f} "
                 f"exposed_ms={exposed:.4f} hidden={hidden:.3f} bucket_mb={args.bucket_mb:g}")
    if rank == 0:
        print(f"# torch {torch.__version__}, gloo, {world} process(es) x 1 thread, "
              f"{per_round} steps per round")
        print(f"result config={args.config} impl={'torch_ddp' if world > 1 else 'torch'} "
              f"world={world} threads=1 ms={ms[0]:.4f} ms_median={statistics.median(ms):.4f} "
              f"global_batch={GLOBAL_BATCH[args.config]} "
              f"samples_per_s={GLOBAL_BATCH[args.config] / (ms[0] * 1e-3):.2f} params={params}"
              f"{extra} peak_rss_kb={torch_models.peak_rss_kb()} loss0={loss0.item():.6f} "
              f"loss={loss:.6f}", flush=True)
    if world > 1:
        dist.barrier()
        # gloo's teardown (destroy_process_group, or the interpreter's exit with DDP alive)
        # hangs in torch 1.13 here: every result is out, so the worker leaves at once
        sys.stdout.flush()
        os._exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, choices=sorted(GLOBAL_BATCH))
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--round-s", type=float)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.warmup = max(2, args.warmup if args.warmup is not None else (2 if args.quick else 3))
    args.rounds = args.rounds if args.rounds is not None else (2 if args.quick else 5)
    args.round_s = args.round_s if args.round_s is not None else (0.2 if args.quick else 1.0)
    if GLOBAL_BATCH[args.config] % args.world:
        sys.exit(f"torch_ddp.py: global batch {GLOBAL_BATCH[args.config]} does not divide "
                 f"among {args.world} processes")
    if args.world == 1:
        worker(0, args, 0)
        return
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(args, free_port()), nprocs=args.world, join=True)


if __name__ == "__main__":
    main()
