"""Benchmark: R feed-forward runs grouped into one model against the same R runs one after another.

    python -m dni_utils.tools.groupbench [--device auto] [--runs 1 3 12 48] [--steps 5] [--rounds 3]

Two set-ups, both DNI on an MNIST-shaped FCN of 3 x 256 with batch 256:
- ``paper``: notebook 01's paper synthesizer (2 hidden layers of 1024);
- ``cpu``: notebook 01's cpu synthesizer (1 hidden layer of 1024), at R = 3 (its seeds).

For each R it prints run-steps per second (R x steps / seconds) one after another (R ordinary
``FFTrainer`` stepping in turn, as ``train_many`` runs them in one process) and grouped (one
``GroupedFFTrainer``), their ratio, measured in the same process and interleaved round by round, and
the FLOP floor: the group's FLOPs per step (torch's counter) over the device's measured
matrix-product throughput, i.e. the run-steps per second a step bound only by arithmetic would
give. A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

from dni_utils.tools.device import device_name, timer, use_device
from dni_utils.trainers.feedforward import FFConfig, FFTrainer
from dni_utils.trainers.grouped import GroupedFFTrainer

SETUPS = {
    "paper": dict(synth_hidden_layers=2, synth_hidden=1024),
    "cpu": dict(synth_hidden_layers=1, synth_hidden=1024),
}


def _configs(setup: str, runs: int, batch: int) -> list[FFConfig]:
    base = dict(method="dni", depth=3, width=256, batch_size=batch, lr=1e-4, steps=10**6, **SETUPS[setup])
    return [FFConfig(seed=s, **base) for s in range(runs)]


def _batches(runs: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, runs, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (batch, runs), generator=gen).to(device)
    return x, y


def matmul_gflops(device: torch.device, n: int = 1024, reps: int = 10) -> float:
    """The device's measured fp32 throughput on an n x n matrix product (GFLOP/s)."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    for _ in range(2):
        a @ b
    start = timer(device)
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (timer(device) - start) / 1e9


def measure(setup: str, runs: int, batch: int, steps: int, rounds: int, device: torch.device) -> dict[str, float]:
    """Run-steps per second one after another and grouped, and the group's GFLOP per step."""
    cfgs = _configs(setup, runs, batch)
    x, y = _batches(runs, batch, device)
    singles = [FFTrainer(c, (1, 28, 28), 10, device) for c in cfgs]
    group = GroupedFFTrainer(cfgs, (1, 28, 28), 10, device)
    for t in singles:
        t.train()
    group.train()
    for _ in range(2):  # warm-up: allocator, Adam state, past the zero start
        for r, t in enumerate(singles):
            t.step(x[:, r], y[:, r])
        group.step(x, y)
    with FlopCounterMode(display=False) as counter:
        group.step(x, y)
    one, grouped = [], []
    for _ in range(rounds):
        start = timer(device)
        for _ in range(steps):
            for r, t in enumerate(singles):
                t.step(x[:, r], y[:, r])
        one.append(runs * steps / (timer(device) - start))
        start = timer(device)
        for _ in range(steps):
            group.step(x, y)
        grouped.append(runs * steps / (timer(device) - start))
    return {"one": statistics.median(one), "grouped": statistics.median(grouped), "gflop": counter.get_total_flops() / 1e9}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Grouped feed-forward runs against runs one after another.")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--runs", type=int, nargs="+", default=[1, 3, 12, 48], help="group sizes R (paper set-up)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    a = p.parse_args(argv)
    dev = use_device(a.device)
    peak = matmul_gflops(dev)
    print(f"grouped runs: DNI, FCN 3x256, batch {a.batch}, torch {torch.__version__}, device {device_name(dev)}, "
          f"{torch.get_num_threads()} threads, {a.rounds} rounds x {a.steps} steps; "
          f"matrix products at {peak:.0f} GFLOP/s")
    print(f"{'set-up':<28}{'R':>4}{'one by one':>12}{'grouped':>10}{'ratio':>8}{'GFLOP/step':>12}{'FLOP floor':>12}")
    print(f"{'':<28}{'':>4}{'run-steps/s':>12}{'':>10}{'':>8}{'(group)':>12}{'run-steps/s':>12}")
    rows = [("paper (2x1024 synthesizers)", "paper", r) for r in a.runs] + [("cpu (1x1024 synthesizer)", "cpu", 3)]
    for label, setup, runs in rows:
        m = measure(setup, runs, a.batch, a.steps, a.rounds, dev)
        floor = runs * peak / m["gflop"] if m["gflop"] else float("inf")
        print(f"{label:<28}{runs:>4}{m['one']:>12.1f}{m['grouped']:>10.1f}{m['grouped'] / m['one']:>8.2f}"
              f"{m['gflop']:>12.2f}{floor:>12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
