"""Benchmark: the recurrent training loop of notebook 05 (Copy), before and after its fast paths,
and grouped recurrent runs (notebooks 05, 06 and 07) against runs one after another.

    python -m dni_utils.tools.copybench [--length 6] [--truncation 2] [--hidden 64] [--batch 128] [--episodes 150]
                                        [--runs 1 8 24] [--group-episodes 10] [--lm-runs 1 8 24] [--lm-chunks 2]
                                        [--ts-runs 1 8 24] [--ts-windows 10] [--device cpu]
                                        [--tables copy grouped-copy grouped-lm grouped-timescales]

One Copy episode of ``length`` vectors (13 steps at 6) is one training batch: the LSTM in chunks of
T steps, the core's optimiser stepping after every chunk, the synthesizer's after every boundary.
Prints (table ``copy``), for BPTT, DNI and DNI + Aux, batches per second in three set-ups:

- ``before``: Adam's per-parameter loop (torch's default on the CPU), one process computing with
  the machine's threads: how notebook 05's grid ran before;
- ``fused Adam``: the same with the fused Adam kernel (``recurrent.adam``), one thread;
- ``2 processes``: the grid's way now, one run per worker process with one thread each and fused
  Adam: the machine's throughput (batches per second summed over the processes).

Then where a DNI batch's time goes (cProfile, by internal time), and the grouped tables, each with
R runs (seeds 0..R-1, one thread, on ``--device``) one after another (R ungrouped runs, each
stepping in turn, as ``train_many`` runs them in one process) and grouped, in run-steps per second
and their ratio:

- ``grouped-copy``: R DNI Copy runs at the fixed length (``grouped_recurrent.GroupedCopyTrainer``),
  run-steps = R x batches;
- ``grouped-lm``: R DNI language-model runs at notebook 06's paper sizes (``--lm-hidden`` and
  ``--lm-batch`` override them) on ``--lm-chunks`` chunks of T = 8 characters
  (``grouped_recurrent.build_lm_group``), run-steps = R x characters of every stream;
- ``grouped-timescales``: R cDNI two-timescale runs at notebook 07's paper sizes, T = 8
  (``grouped_timescales.GroupedTimescaleSystem``), run-steps = R x ticks.

This is a benchmark, not a test: it prints figures and never fails on them. The LSTM itself is
already the fused ``nn.LSTM`` kernel over each chunk (``recurrent.LSTMCore.chunk``);
``torch.compile`` was not used: the chunk shapes change with every curriculum length, and the time
goes to autograd's per-call overhead, not to kernels.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import os
import pstats
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch

from dni_utils.data.tasks import Episode
from dni_utils.experiments.nb06_ptb_char import PTB_PROFILES
from dni_utils.experiments.nb07_two_timescales import TIMESCALE_PROFILES
from dni_utils.tools.device import device_name, timer, use_device
from dni_utils.trainers.grouped_recurrent import (
    GroupedCopyTrainer, build_lm_group, char_losses, run_group_episode,
)
from dni_utils.trainers.grouped_timescales import GroupedTimescaleSystem
from dni_utils.trainers.language_model import LMConfig, batchify, char_episode, char_loss
from dni_utils.trainers.recurrent import (
    RNN_METHOD_LABELS, RNN_METHODS, RNNConfig, build, build_recurrent, run_episode,
)
from dni_utils.trainers.timescales import TimescaleConfig, build_system, train_window

#: Symbols of the language model's input and output (about the size of the Penn Treebank's character
#: vocabulary, notebook 06's paper data; next to its 1024-unit LSTM the exact count hardly matters).
PTB_VOCAB = 50


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


def grouped_lm_rates(runs: int, truncation: int, hidden: int, batch: int, chunks: int, vocab: int,
                     device: torch.device, method: str = "dni") -> tuple[float, float]:
    """Character steps per second (R x steps / seconds, each step one character of every stream) of
    ``runs`` language-model runs (notebook 06: ``squash_cell``, scale 0.1, a linear synthesizer as
    wide as the core) one after another and grouped (``grouped_recurrent.build_lm_group``), on the
    same segment of ``chunks`` x T characters of a random text over ``vocab`` symbols, after one
    warm-up segment each way."""
    cfgs = [LMConfig(method=method, truncation=truncation, hidden=hidden, batch_size=batch, synth_hidden_layers=0,
                     synth_hidden=hidden, grad_scale=0.1, squash_cell=True, seed=s) for s in range(runs)]
    steps = chunks * truncation
    text = torch.randint(vocab, ((steps + 1) * batch,), generator=torch.Generator().manual_seed(0))
    episode = char_episode(batchify(text, batch).to(device), 0, steps, vocab)  # x (t, B, V), y (t, B)
    singles = []
    for c in cfgs:  # as train_lm builds them
        torch.manual_seed(c.seed)
        core, interface, optimizer = build_recurrent(vocab, vocab, c.method, c.hidden, c.lr, c.synth_lr,
                                                     c.synth_hidden_layers, c.synth_hidden, c.grad_scale, c.squash_cell)
        singles.append((core.to(device).train(), interface.to(device).train(), optimizer))
    core, interface, optimizer, aux_optimizer, _ = build_lm_group(cfgs, vocab, device)
    core.train()
    interface.train()
    grouped_episode = Episode(episode.x.unsqueeze(2).expand(-1, -1, runs, -1), episode.y, episode.mask)

    def one_by_one() -> None:
        for single_core, single_interface, single_optimizer in singles:
            run_episode(single_core, episode, truncation, single_interface, single_optimizer, loss_fn=char_loss,
                        open_end=True)
            single_interface.discard()

    def grouped() -> None:
        run_group_episode(core, grouped_episode, [steps] * runs, truncation, interface, optimizer, aux_optimizer,
                          loss_fn=char_losses, open_end=True)
        interface.discard()

    seconds = []
    for step in (one_by_one, grouped):
        step()  # warm-up
        start = timer(device)
        step()
        seconds.append(timer(device) - start)
    return runs * steps / seconds[0], runs * steps / seconds[1]


def grouped_timescale_rates(runs: int, cfg: TimescaleConfig, windows: int, device: torch.device) -> tuple[float, float]:
    """Ticks per second (R x ticks / seconds) of ``runs`` two-timescale runs of ``cfg`` (seeds
    0..R-1) one after another (``timescales.train_window``) and grouped
    (``grouped_timescales.GroupedTimescaleSystem``), on the same windows of random 28x28 digits,
    after one warm-up window each way."""
    cfgs = [dataclasses.replace(cfg, seed=s) for s in range(runs)]
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(1000, 1, 28, 28, generator=gen).to(device), torch.randint(10, (1000,), generator=gen)
    labels = labels.to(device)
    idx = torch.randint(1000, (windows + 1, cfg.period, cfg.batch_size, runs), generator=gen).to(device)
    singles = [build_system(c, 28 * 28) for c in cfgs]
    for system in singles:
        for module in (system.a, system.b, system.interface):
            module.to(device)
        system.train()
    group = GroupedTimescaleSystem(cfgs, 28 * 28, device)
    group.train()

    def one_by_one(k: int) -> None:
        for r, system in enumerate(singles):
            train_window(system, images[idx[k, :, :, r]], labels[idx[k, :, :, r]])

    def grouped(k: int) -> None:
        group.window(images[idx[k]], labels[idx[k]])

    seconds = []
    for step in (one_by_one, grouped):
        step(0)  # warm-up
        start = timer(device)
        for k in range(1, windows + 1):
            step(k)
        seconds.append(timer(device) - start)
    ticks = runs * windows * cfg.period
    return ticks / seconds[0], ticks / seconds[1]


def _ratio_table(rows) -> None:
    print(f"{'R':>4s} {'one by one':>11s} {'grouped':>9s} {'ratio':>7s}")
    for runs, (alone, grouped) in rows:
        print(f"{runs:4d} {alone:11.1f} {grouped:9.1f} {grouped / alone:6.2f}x")


TABLES = ("copy", "grouped-copy", "grouped-lm", "grouped-timescales")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=6)
    parser.add_argument("--truncation", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 8, 24], help="group sizes of the grouped Copy table")
    parser.add_argument("--group-episodes", type=int, default=10, help="batches per run and measure, grouped table")
    parser.add_argument("--lm-runs", type=int, nargs="+", default=[1, 8, 24],
                        help="group sizes of the grouped language-model table")
    parser.add_argument("--lm-chunks", type=int, default=2, help="chunks of T characters per measure, language model")
    parser.add_argument("--lm-hidden", type=int, default=0, help="LSTM units of the language model (0: the paper's)")
    parser.add_argument("--lm-batch", type=int, default=0, help="streams of the language model (0: the paper's)")
    parser.add_argument("--ts-runs", type=int, nargs="+", default=[1, 8, 24],
                        help="group sizes of the grouped two-timescale table")
    parser.add_argument("--ts-windows", type=int, default=10, help="windows per run and measure, two timescales")
    parser.add_argument("--device", default="cpu", help="device of the grouped tables: auto | cpu | cuda | cuda:N")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), help=f"any of {TABLES} (default: all)")
    a = parser.parse_args(argv)
    unknown = [t for t in a.tables if t not in TABLES]
    if unknown:
        raise ValueError(f"tables={a.tables!r} is invalid: expected a subset of {TABLES}")
    for name in ("runs", "lm_runs", "ts_runs"):
        if any(n < 1 for n in getattr(a, name)):
            raise ValueError(f"{name}={getattr(a, name)!r} is invalid: expected positive integers")
    threads = torch.get_num_threads()
    if "copy" in a.tables:
        _copy_tables(a, threads)
    torch.set_num_threads(1)
    device = use_device(a.device)
    if "grouped-copy" in a.tables:
        print(f"\ngrouped: R DNI Copy runs, N = {a.length}, T = {a.truncation}, LSTM {a.hidden}, batch {a.batch}, "
              f"{a.group_episodes} batches per run and measure, one thread, on {device_name(device)}; run-steps per "
              f"second:")
        _ratio_table((r, grouped_rates(r, a.length, a.truncation, a.hidden, a.batch, a.group_episodes, device))
                     for r in a.runs)
    if "grouped-lm" in a.tables:
        lm = PTB_PROFILES["paper"]
        t, hidden, batch = lm["pair"][0], a.lm_hidden or lm["hidden"], a.lm_batch or lm["batch_size"]
        sizes = "notebook 06's paper sizes" if (hidden, batch) == (lm["hidden"], lm["batch_size"]) else "sizes"
        print(f"\ngrouped: R DNI language-model runs at {sizes} (LSTM {hidden}, batch {batch}, T = {t}, {PTB_VOCAB} "
              f"symbols), {a.lm_chunks} chunks ({a.lm_chunks * t} characters) per run and measure, one thread, on "
              f"{device_name(device)}; character steps per second (one paper training step is a segment of "
              f"{lm['segment']}):")
        _ratio_table((r, grouped_lm_rates(r, t, hidden, batch, a.lm_chunks, PTB_VOCAB, device)) for r in a.lm_runs)
    if "grouped-timescales" in a.tables:
        ts = TIMESCALE_PROFILES["paper"]
        t = sorted(ts["periods"])[len(ts["periods"]) // 2]
        cfg = TimescaleConfig(method="cdni", period=t, **{k: ts[k] for k in (
            "batch_size", "encoder", "hidden_a", "message", "hidden_b", "lr", "synth_lr", "synth_hidden_layers",
            "synth_hidden", "grad_scale")})
        print(f"\ngrouped: R cDNI two-timescale runs at notebook 07's paper sizes (encoder {cfg.encoder}, LSTMs "
              f"{cfg.hidden_a} and {cfg.hidden_b}, message {cfg.message}, batch {cfg.batch_size}, T = {t}), "
              f"{a.ts_windows} windows per run and measure, one thread, on {device_name(device)}; ticks per second "
              f"(one paper training step is a window of T ticks):")
        _ratio_table((r, grouped_timescale_rates(r, cfg, a.ts_windows, device)) for r in a.ts_runs)
    torch.set_num_threads(threads)


def _copy_tables(a: argparse.Namespace, threads: int) -> None:
    """Batches per second before and after the fast paths, and where a DNI batch's time goes."""
    cores = os.cpu_count() or 1
    print(f"Copy, N = {a.length} ({2 * a.length + 1} steps), T = {a.truncation}, LSTM {a.hidden}, batch {a.batch}, "
          f"{a.episodes} batches per measure, {cores} cores; batches per second:")
    print(f"{'method':12s} {'before':>8s} {'fused Adam':>11s} {'2 processes':>12s} {'speed-up':>9s}")
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
