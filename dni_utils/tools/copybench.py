"""Benchmark: the recurrent training loop of notebook 05 (Copy), before and after its fast paths.

    python -m dni_utils.tools.copybench [--length 6] [--truncation 2] [--hidden 64] [--batch 128] [--episodes 150]
                                        [--runs 1 8 24] [--group-episodes 10] [--device cpu]

One Copy episode of ``length`` vectors (13 steps at 6) is one training batch: the LSTM in chunks of
T steps, the core's optimiser stepping after every chunk, the synthesizer's after every boundary.
Prints, for BPTT, DNI and DNI + Aux, batches per second in three set-ups:

- ``before``: Adam's per-parameter loop (torch's default on the CPU), one process computing with
  the machine's threads: how notebook 05's grid ran before;
- ``fused Adam``: the same with the fused Adam kernel (``recurrent.adam``), one thread;
- ``2 processes``: the grid's way now, one run per worker process with one thread each and fused
  Adam: the machine's throughput (batches per second summed over the processes).

Then where a DNI batch's time goes (cProfile, by internal time), and the grouped table: R DNI Copy
runs at the fixed length (seeds 0..R-1, one thread, on ``--device``) one after another (R ungrouped
runs, each stepping through its episode in turn, as ``train_many`` runs them in one process) and
grouped (one ``grouped_recurrent.GroupedCopyTrainer``), in run-steps per second (R x batches /
seconds) and their ratio. This is a benchmark, not a test: it prints figures and never fails on
them. The LSTM itself is already the fused ``nn.LSTM`` kernel over each chunk
(``recurrent.LSTMCore.chunk``); ``torch.compile`` was not used: the chunk shapes change with every
curriculum length, and the time goes to autograd's per-call overhead, not to kernels.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch

from dni_utils.data.tasks import Episode
from dni_utils.tools.device import device_name, timer, use_device
from dni_utils.trainers.grouped_recurrent import GroupedCopyTrainer
from dni_utils.trainers.recurrent import RNN_METHOD_LABELS, RNN_METHODS, RNNConfig, build, run_episode


def _episodes_per_second(method: str, length: int, truncation: int, hidden: int, batch: int, episodes: int,
                         fused: bool, threads: int) -> float:
    torch.set_num_threads(threads)
    cfg = RNNConfig(method=method, task="copy", truncation=truncation, hidden=hidden, width=4, batch_size=batch,
                    synth_hidden=hidden, synth_steps=2, fused_adam=fused)
    task, core, interface, optimizer = build(cfg)
    gen = torch.Generator().manual_seed(0)
    data = [task.sample(length, batch, gen) for _ in range(episodes + 10)]
    aux = 0.1 if method == "dni_aux" else 0.0
    for episode in data[:10]:  # warm-up
        run_episode(core, episode, truncation, interface, optimizer, aux_weight=aux)
    start = time.perf_counter()
    for episode in data[10:]:
        run_episode(core, episode, truncation, interface, optimizer, aux_weight=aux)
    return episodes / (time.perf_counter() - start)


def _one_thread_run(args: tuple) -> float:
    return _episodes_per_second(*args, fused=True, threads=1)


def grouped_rates(runs: int, length: int, truncation: int, hidden: int, batch: int, episodes: int,
                  device: torch.device) -> tuple[float, float]:
    """Run-steps per second of ``runs`` DNI Copy runs one after another and grouped (after one
    warm-up episode each way), on the same episodes."""
    cfgs = [RNNConfig(method="dni", task="copy", truncation=truncation, hidden=hidden, width=4, batch_size=batch,
                      synth_hidden=hidden, synth_steps=2, seed=s) for s in range(runs)]
    singles = [build(c) for c in cfgs]
    for _, core, interface, _ in singles:
        core.to(device).train()
        interface.to(device).train()
    group = GroupedCopyTrainer(cfgs, device)
    group.train()
    gen = torch.Generator().manual_seed(0)
    data = [[singles[0][0].sample(length, batch, gen) for _ in range(runs)] for _ in range(episodes + 1)]
    on_device = [[Episode(e.x.to(device), e.y.to(device), e.mask.to(device)) for e in eps] for eps in data]

    def one_by_one(k: int) -> None:
        for (_, core, interface, optimizer), episode in zip(singles, on_device[k]):
            run_episode(core, episode, truncation, interface, optimizer)

    def grouped(k: int) -> None:
        group.episode(data[k])  # the group pads its runs' episodes and moves them itself

    seconds = []
    for step in (one_by_one, grouped):
        step(0)  # warm-up
        start = timer(device)
        for k in range(1, episodes + 1):
            step(k)
        seconds.append(timer(device) - start)
    return runs * episodes / seconds[0], runs * episodes / seconds[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=6)
    parser.add_argument("--truncation", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 8, 24], help="group sizes of the grouped table")
    parser.add_argument("--group-episodes", type=int, default=10, help="batches per run and measure, grouped table")
    parser.add_argument("--device", default="cpu", help="device of the grouped table: auto | cpu | cuda | cuda:N")
    a = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"Copy, N = {a.length} ({2 * a.length + 1} steps), T = {a.truncation}, LSTM {a.hidden}, batch {a.batch}, "
          f"{a.episodes} batches per measure, {cores} cores; batches per second:")
    print(f"{'method':12s} {'before':>8s} {'fused Adam':>11s} {'2 processes':>12s} {'speed-up':>9s}")
    threads = torch.get_num_threads()
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:  # started once, for every method
        for method in RNN_METHODS:
            shape = (method, a.length, a.truncation, a.hidden, a.batch, a.episodes)
            before = _episodes_per_second(*shape, fused=False, threads=threads)
            fused = _episodes_per_second(*shape, fused=True, threads=1)
            both = sum(pool.map(_one_thread_run, [shape, shape]))
            torch.set_num_threads(threads)
            print(f"{RNN_METHOD_LABELS[method]:12s} {before:8.1f} {fused:11.1f} {both:12.1f} {both / before:8.2f}x")
    torch.set_num_threads(1)
    cfg = RNNConfig(method="dni", task="copy", truncation=a.truncation, hidden=a.hidden, width=4,
                    batch_size=a.batch, synth_hidden=a.hidden, synth_steps=2)
    task, core, interface, optimizer = build(cfg)
    gen = torch.Generator().manual_seed(0)
    data = [task.sample(a.length, a.batch, gen) for _ in range(60)]
    profile = cProfile.Profile()
    profile.enable()
    for episode in data:
        run_episode(core, episode, a.truncation, interface, optimizer)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
    print("\nwhere a DNI batch's time goes (one thread, fused Adam; cProfile, internal time):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-1200:])
    device = use_device(a.device)
    print(f"\ngrouped: R DNI Copy runs, N = {a.length}, T = {a.truncation}, LSTM {a.hidden}, batch {a.batch}, "
          f"{a.group_episodes} batches per run and measure, one thread, on {device_name(device)}; run-steps per second:")
    print(f"{'R':>4s} {'one by one':>11s} {'grouped':>9s} {'ratio':>7s}")
    for runs in a.runs:
        alone, grouped = grouped_rates(runs, a.length, a.truncation, a.hidden, a.batch, a.group_episodes, device)
        print(f"{runs:4d} {alone:11.1f} {grouped:9.1f} {grouped / alone:6.2f}x")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
