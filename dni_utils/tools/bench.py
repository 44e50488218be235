"""Benchmark: the cost of a training step with Bprop, DNI and cDNI on the same MLP.

    python -m dni_utils.tools.bench [--device auto] [--depth 3] [--width 256] [--batch 256] [--rounds 7] [--steps 30]

The methods run in one process, interleaved round by round (so that a slow spell of the machine
hits every method alike), on random MNIST-shaped data. Prints the median milliseconds per step
and the ratio to Bprop. Target: a DNI step with a linear synthesizer costs at most 1.3x a Bprop
step. This is a benchmark, not a test: it prints figures and never fails on them. It also
prints the FLOPs of one step of each variant: a linear synthesizer on a (B, W) activation adds
a forward and a weight-gradient product of W x W per interface, so on CPU, where the products
dominate, the FLOP ratio is the floor under the time ratio.

Host synchronisation. The training loops keep their per-step losses on the device and read them
at log points (``checkpoint.Meter``). The second table times each variant both ways: ``synced``
reads the task loss and every synthesizer loss back after each step, as the loops did before
(``.item()``, which waits for the device), ``unsynced`` does not. On the CPU the two are the same
work; on a GPU a read stalls the host until the queued kernels have run, so that the host cannot
run ahead and queue the next step. Times on CUDA are taken after ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dni_utils.tools.device import device_name, timer, use_device
from dni_utils.trainers.feedforward import FFConfig, FFTrainer

TARGET = 1.3


def _variants(depth: int, width: int, batch: int) -> dict[str, FFConfig]:
    base = dict(depth=depth, width=width, batch_size=batch, lr=1e-4, steps=10**6)
    return {
        "bprop": FFConfig(method="bprop", **base),
        "dni (linear synth)": FFConfig(method="dni", synth_kind="linear", **base),
        "cdni (linear synth)": FFConfig(method="cdni", csynth_kind="linear", **base),
        "dni (2x1024 synth, paper)": FFConfig(method="dni", synth_kind="mlp", synth_hidden_layers=2, **base),
    }


def flops(depth: int = 3, width: int = 256, batch: int = 256) -> dict[str, int]:
    """Floating-point operations of one training step of each variant (torch's FLOP counter:
    matrix products and convolutions), the arithmetic floor of the time ratios."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 1, 28, 28, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    out = {}
    for name, cfg in _variants(depth, width, batch).items():
        trainer = FFTrainer(cfg, (1, 28, 28), 10)
        trainer.train()
        trainer.step(x, y)  # past the zero start
        with FlopCounterMode(display=False) as counter:
            trainer.step(x, y)
        out[name] = counter.get_total_flops()
    return out


def _step(trainer: FFTrainer, x: torch.Tensor, y: torch.Tensor, synced: bool) -> None:
    loss = trainer.step(x, y)
    if synced:  # what the loops did before: every per-step value read back at once
        float(loss.item())
        for iface in trainer.interfaces:
            if iface.mode != "off":
                float(iface.last_loss)


def run(
    depth: int = 3, width: int = 256, batch: int = 256, rounds: int = 7, steps: int = 30, device: str = "auto",
    synced: bool = False,
) -> dict[str, float]:
    """Median ms per step for each variant on ``device`` (``synced``: reading the losses every step)."""
    dev = use_device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=gen).to(dev)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    trainers = {name: FFTrainer(cfg, (1, 28, 28), 10, dev) for name, cfg in _variants(depth, width, batch).items()}
    for t in trainers.values():  # warm-up: allocator, Adam state
        t.train()
        for _ in range(5):
            _step(t, x, y, synced)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, t in trainers.items():
            start = timer(dev)
            for _ in range(steps):
                _step(t, x, y, synced)
            times[name].append((timer(dev) - start) / steps * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time Bprop, DNI and cDNI training steps on one MLP.")
    p.add_argument("--depth", type=int, default=3, help="hidden layers")
    p.add_argument("--width", type=int, default=256, help="units per hidden layer")
    p.add_argument("--batch", type=int, default=256, help="batch size")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    p.add_argument("--steps", type=int, default=30, help="steps per method per round")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    a = p.parse_args(argv)
    dev = use_device(a.device)
    print(
        f"MLP {a.depth}x{a.width}, batch {a.batch}, torch {torch.__version__}, device {device_name(dev)}, "
        f"{torch.get_num_threads()} threads, {a.rounds} rounds x {a.steps} steps"
    )
    ms = run(a.depth, a.width, a.batch, a.rounds, a.steps, a.device)
    synced = run(a.depth, a.width, a.batch, a.rounds, a.steps, a.device, synced=True)
    fl = flops(a.depth, a.width, a.batch)
    base = ms["bprop"]
    print(f"{'method':<28}{'ms/step':>10}{'x bprop':>10}{'GFLOP/step':>12}{'x bprop':>10}")
    for name, v in ms.items():
        print(f"{name:<28}{v:>10.2f}{v / base:>10.2f}{fl[name] / 1e9:>12.3f}{fl[name] / fl['bprop']:>10.2f}")
    ratio = ms["dni (linear synth)"] / base
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"target: DNI (linear synth) step <= {TARGET}x Bprop step: {ratio:.2f}x, {verdict}")
    print(f"\nper-step host reads of the losses ({dev.type}): before (synced) and after (unsynced)")
    print(f"{'method':<28}{'synced ms':>10}{'unsynced':>10}{'ratio':>8}")
    for name, v in ms.items():
        print(f"{name:<28}{synced[name]:>10.2f}{v:>10.2f}{synced[name] / v:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
