"""Benchmark: the recurrent training loop of notebook 05 (Copy), before and after its fast paths.

    python -m dni_utils.tools.copybench [--length 6] [--truncation 2] [--hidden 64] [--batch 128] [--episodes 150]

One Copy episode of ``length`` vectors (13 steps at 6) is one training batch: the LSTM in chunks of
T steps, the core's optimiser stepping after every chunk, the synthesizer's after every boundary.
Prints, for BPTT, DNI and DNI + Aux, batches per second in three set-ups:

- ``before``: Adam's per-parameter loop (torch's default on the CPU), one process computing with
  the machine's threads: how notebook 05's grid ran before;
- ``fused Adam``: the same with the fused Adam kernel (``recurrent.adam``), one thread;
- ``2 processes``: the grid's way now, one run per worker process with one thread each and fused
  Adam: the machine's throughput (batches per second summed over the processes).

Then where a DNI batch's time goes (cProfile, by internal time). This is a benchmark, not a test:
it prints figures and never fails on them. The LSTM itself is already the fused ``nn.LSTM`` kernel
over each chunk (``recurrent.LSTMCore.chunk``); ``torch.compile`` was not used: the chunk shapes change
with every curriculum length, and the time goes to autograd's per-call overhead, not to kernels.
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

from dni_utils.trainers.recurrent import RNN_METHODS, RNN_METHOD_LABELS, RNNConfig, build, run_episode


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=6)
    parser.add_argument("--truncation", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--episodes", type=int, default=150)
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
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
