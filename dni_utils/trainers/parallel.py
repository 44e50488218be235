"""Decoupled training for real: K stages of a network in K processes (notebook 08).

Every other notebook runs the decoupled updates one after another in one process: it shows that
DNI *can* learn update-unlocked, never that it is faster. Here each stage is a process with one
intra-op thread (one worker), holding a contiguous group of hidden blocks of the MNIST FCN (the
last stage also holds the output layer). They talk through ``torch.distributed`` (gloo on CPU):

- ``dni`` / ``cdni``: stage k receives the activations of batch t from stage k-1, computes its
  blocks, and hands them to its ``BackwardInterface`` (the same one every notebook uses): the
  synthetic gradient δ̂ goes into its blocks at once and the stage steps. It sends the message on
  to stage k+1 at once (non-blocking) and posts a non-blocking receive for the gradient that
  stage k+1 will send back for that batch; that gradient is the synthesizer's regression target
  when it arrives. The gradient that reached its own input (δ̂ back-propagated through its blocks,
  or the true one at the last stage) goes back to stage k-1. No stage waits for a backward pass.
  ``staleness`` s: the target of batch t is applied at the stage's step t + s (s batches late),
  waiting for it only if it is later still, so that a run does not depend on timing and the same
  seed gives the same numbers; 0 applies targets as they arrive (then the run depends on timing).
  ``in_flight``: sends a stage may have outstanding (back-pressure on the forward messages).
- ``gpipe`` / ``1f1b``: ``torch.distributed.pipelining`` with its GPipe and 1F1B schedules over the
  same K workers: every optimiser step runs ``in_flight`` micro-batches of ``batch_size`` through
  the pipeline (so the matrices are the size DNI's are), and every stage is update-locked.
- ``bprop``: the whole network in one process with one thread (the single worker that a K-worker
  pipeline is measured against); ``bprop_threads``: the same with every core of the machine.

What is timed (seconds, throughput, the timeline of what each stage did) depends on the machine
and on what else runs, so ``ParallelRun.to_dict`` leaves it out: the result file holds counts and
errors only. Launch: ``train_parallel`` (``torch.multiprocessing``, from a notebook) or
``torchrun --nproc-per-node K -m dni_utils.trainers.parallel --method dni`` (the same stage code).
If a stage raises or dies, the launcher stops the others at once and raises ``StageFailedError``
with the stage's message.

Device. ``train_parallel(..., device=...)`` (``auto``: CUDA when available, else the CPU; ``cpu``;
``cuda``; ``cuda:N``). On the CPU nothing differs from before. On CUDA stage k computes on
``cuda:(N + k) % torch.cuda.device_count()`` (N = 0 for ``cuda``): on a machine with one GPU every
stage shares it, each in its own process. The messages still travel over gloo through the host: a
stage copies what it sends to the CPU (``.cpu()``) and what it receives to its GPU (``.to(device)``),
a copy per message each way (for GPipe and 1F1B the stage's module is wrapped so that the
pipeline's own messages cross the same way). NCCL is not used: it refuses two ranks on the same
GPU, which is what a single-GPU machine has, and gloo's point-to-point messages take CPU tensors
only. The per-step training loss stays on the device (``checkpoint.Meter``) and is read at the
snapshots, where a NaN or infinite loss raises ``DivergenceError`` naming the step it first
appeared at. The snapshots' weights are copied to the host as they are taken (the parent
evaluates them on the CPU, as before).

No checkpoints. The runs of notebook 08 last under a minute at ``cpu`` and their stages are
separate processes that exchange messages in flight, so an interrupted run is started again rather
than resumed; ``max_steps`` (``ParallelConfig.capped``) cuts them for a dry run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import math
import os
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dni_utils.data.images import BatchSampler, load_dataset
from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.mechanism.models import FFNet, make_net
from dni_utils.mechanism.synthesizers import make_synthesizer
from dni_utils.tools.checkpoint import Meter, first_non_finite
from dni_utils.tools.device import resolve_device, synchronize, use_device
from dni_utils.trainers.feedforward import DivergenceError, one_hot, task_loss

PARALLEL_METHODS = ("bprop", "bprop_threads", "gpipe", "1f1b", "dni", "cdni")
PARALLEL_LABELS = {
    "bprop": "Bprop, 1 worker", "bprop_threads": "Bprop, all cores", "gpipe": "GPipe", "1f1b": "1F1B",
    "dni": "DNI", "cdni": "cDNI",
}
PIPELINES = ("gpipe", "1f1b")
DECOUPLED = ("dni", "cdni")
#: What a stage is doing, in the timeline: its own arithmetic, posting a send, waiting for the
#: activations of its next batch, for a target that is due (``staleness`` batches late) but has
#: not arrived, or for the next stage to take a send (back-pressure); a pipeline schedule's step
#: mixes all of them.
WAITS = ("wait for input", "wait for target", "wait for send")
ACTIVITIES = ("compute", "send", *WAITS, "schedule step")
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


class StageFailedError(RuntimeError):
    """A stage raised or died; the other stages were stopped."""


@dataclass
class ParallelConfig:
    method: str = "dni"  # bprop | bprop_threads | gpipe | 1f1b | dni | cdni
    stages: int = 2  # K: processes (workers) for the pipelines and DNI
    depth: int = 8  # hidden blocks (Linear, BatchNorm, ReLU); the output layer is extra
    width: int = 512
    batch_size: int = 128
    steps: int = 1000  # batches of batch_size every method trains on (pipelines: steps / in_flight optimiser steps)
    lr: float = 1e-3  # Adam, every block and the output layer
    synth_lr: float = 1e-3  # Adam, the synthesizers (linear; cDNI: the one-hot label as context)
    grad_scale: float = 1.0
    optimizer: str = "adam"  # adam | sgd (plain SGD: what the exactness tests use, since Adam hides a gradient's scale)
    synth_factory: str | None = None  # "module:function" building stage k's synthesizer (tests: an exact one); None: linear
    in_flight: int = 2  # forward sends a stage may have outstanding; the pipelines' micro-batches per step
    staleness: int = 2  # a target is applied this many batches late (0: as it arrives, timing-dependent)
    snapshots: int = 6  # evaluation points, evenly spaced in examples
    timeline_start: int = 20  # first step recorded in the timeline
    timeline_steps: int = 6  # steps recorded
    comm_timeout: float = 120.0  # seconds a collective may block before gloo gives up
    seed: int = 0
    fail_at: tuple[int, int] | None = None  # (stage, step): that stage raises there (tests the failure path)

    @property
    def workers(self) -> int:
        return 1 if self.method in ("bprop", "bprop_threads") else self.stages

    def validate(self) -> ParallelConfig:
        if self.method not in PARALLEL_METHODS:
            raise ValueError(f"method={self.method!r} is unknown: expected one of {PARALLEL_METHODS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is unknown: expected one of {OPTIMIZERS}")
        for name in ("stages", "depth", "width", "batch_size", "steps", "in_flight", "snapshots", "timeline_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
        for name in ("staleness", "timeline_start"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 0")
        if self.stages < 2 and self.method not in ("bprop", "bprop_threads"):
            raise ValueError(f"stages={self.stages} is invalid for method={self.method!r}: expected at least 2")
        if self.stages > self.depth:
            raise ValueError(f"stages={self.stages} is invalid: expected at most depth={self.depth} (a block per stage)")
        if self.method in PIPELINES and self.steps % self.in_flight:
            raise ValueError(f"steps={self.steps} is invalid for {self.method}: expected a multiple of in_flight={self.in_flight}")
        if self.snapshots > self.steps:
            raise ValueError(f"snapshots={self.snapshots} is invalid: expected at most steps={self.steps}")
        for name in ("lr", "synth_lr", "grad_scale", "comm_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected a positive number")
        return self

    def train_steps(self) -> int:
        """Batches the run trains on."""
        return self.steps

    def capped(self, n: int) -> ParallelConfig:
        """The same run cut to at most ``n`` batches (a dry run, or a timed warm-up), with at most
        as many snapshots (the last at its end). When ``steps`` is a multiple of ``in_flight`` (every
        profile's is: the pipelines' optimiser step takes ``in_flight`` batches) so is the cut,
        rounded down, but never below ``in_flight``: one optimiser step of the pipelines."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"max_steps={n!r} is invalid: expected a positive integer")
        steps = min(n, self.steps)
        if self.steps % self.in_flight == 0:
            steps = max(self.in_flight, steps - steps % self.in_flight)
        return dataclasses.replace(self, steps=steps, snapshots=min(self.snapshots, steps))


# --------------------------------------------------------------------------------------------
# The cost model: floating-point operations per example, and the best speed-up they allow.


def _linear_sizes(cfg: ParallelConfig, in_features: int, n_classes: int) -> list[tuple[int, int]]:
    """(in, out) of each hidden block's Linear layer, then the output layer's."""
    return [(in_features if i == 0 else cfg.width, cfg.width) for i in range(cfg.depth)] + [(cfg.width, n_classes)]


def block_flops(cfg: ParallelConfig, in_features: int = 784, n_classes: int = 10) -> list[int]:
    """Training flops per example of each hidden block and (last) the output layer: forward 2·i·o,
    backward 4·i·o (the input's gradient and the weights'), except the first block (2·i·o: no
    gradient for the data). BatchNorm, ReLU and the optimiser are left out (linear in the width)."""
    sizes = _linear_sizes(cfg, in_features, n_classes)
    return [2 * i * o + (2 if k == 0 else 4) * i * o for k, (i, o) in enumerate(sizes)]


def synth_flops(cfg: ParallelConfig, n_classes: int = 10) -> int:
    """A stage's extra flops per example for its interface: the linear synthesizer's prediction,
    the prediction made again at the update (the synthesizer has stepped since), and the gradient
    of its weights: 3 x 2·(width + context)·width."""
    context = n_classes if cfg.method == "cdni" else 0
    return 6 * (cfg.width + context) * cfg.width


def stage_flops(cfg: ParallelConfig, split: list[int], in_features: int = 784, n_classes: int = 10) -> list[int]:
    """Training flops per example of each stage under ``split`` (blocks per stage; the last stage
    also has the output layer), with the interface's extra work for DNI and cDNI."""
    per_block = block_flops(cfg, in_features, n_classes)
    out, start = [], 0
    for k, n in enumerate(split):
        flops = sum(per_block[start : start + n])
        start += n
        if k == len(split) - 1:
            flops += per_block[-1]
        elif cfg.method in DECOUPLED:
            flops += synth_flops(cfg, n_classes)
        out.append(flops)
    return out


def stage_split(cfg: ParallelConfig, in_features: int = 784, n_classes: int = 10) -> list[int]:
    """Blocks per stage, contiguous, that minimise the busiest stage's flops under this method's cost
    (DNI's stages carry their synthesizer; the pipelines' do not): each method gets its best split."""
    if cfg.workers == 1:
        return [cfg.depth]
    best: tuple[int, list[int]] | None = None

    def splits(left: int, parts: int) -> Iterator[list[int]]:
        if parts == 1:
            yield [left]
            return
        for n in range(1, left - parts + 2):
            for rest in splits(left - n, parts - 1):
                yield [n, *rest]

    for split in splits(cfg.depth, cfg.stages):
        worst = max(stage_flops(cfg, split, in_features, n_classes))
        if best is None or worst < best[0]:
            best = (worst, split)
    assert best is not None
    return best[1]


def best_speedup(cfg: ParallelConfig, in_features: int = 784, n_classes: int = 10) -> float | None:
    """The throughput this method could reach, relative to one worker running backprop, if only
    the arithmetic counted (no messages, no per-step overhead, perfectly parallel stages):

    - DNI, cDNI: total backprop flops / the busiest stage's flops (its synthesizer included);
    - GPipe, 1F1B with m = ``in_flight`` micro-batches: m·total / ((m + K - 1)·busiest stage)
      (the pipeline's fill and drain);
    - Bprop, 1 worker: 1; Bprop on every core: not modelled (None).
    """
    if cfg.method == "bprop":
        return 1.0
    if cfg.method == "bprop_threads":
        return None
    total = sum(block_flops(cfg, in_features, n_classes))
    busiest = max(stage_flops(cfg, stage_split(cfg, in_features, n_classes), in_features, n_classes))
    if cfg.method in DECOUPLED:
        return total / busiest
    m = cfg.in_flight
    return m * total / ((m + cfg.stages - 1) * busiest)


# --------------------------------------------------------------------------------------------
# One stage, in its own process.


class _Clock:
    """Seconds spent per activity, and the events of the recorded steps (for the timeline).

    On CUDA the device's work is queued: outside the recorded steps an activity's seconds are the
    host's, and the queued work is charged to whatever waits for it next (a copy to the host before
    a send, a snapshot); within them every activity waits for the device, so that the timeline is true."""

    def __init__(self, cfg: ParallelConfig, device: torch.device = torch.device("cpu")) -> None:
        self.device = device
        self.first, self.last = cfg.timeline_start, cfg.timeline_start + cfg.timeline_steps
        self.totals = dict.fromkeys(ACTIVITIES, 0.0)
        self.events: list[tuple[int, str, float, float]] = []
        self.step = 0
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    @contextlib.contextmanager
    def __call__(self, activity: str) -> Iterator[None]:
        recorded = self.first <= self.step < self.last
        if recorded:
            synchronize(self.device)
        start = self.now()
        yield
        if recorded:
            synchronize(self.device)
        end = self.now()
        self.totals[activity] += end - start
        if self.first <= self.step < self.last:
            self.events.append((self.step, activity, start, end))


class _Stage:
    """What every method's stage shares: its part of the network, data, snapshots, the clock."""

    def __init__(
        self, rank: int, world: int, cfg: ParallelConfig, dataset: str, device: torch.device = torch.device("cpu")
    ) -> None:
        self.rank, self.world, self.cfg, self.device = rank, world, cfg, device
        self.last = rank == world - 1
        data = load_dataset(dataset)
        self.n_classes = data.n_classes
        self.in_shape = data.shape
        torch.manual_seed(cfg.seed)  # every stage builds the same whole network, then keeps its part
        # on the CPU, from the seed, then moved: the same initial weights on every device
        net = make_net("fcn", data.shape, cfg.depth, cfg.width, data.n_classes).to(device)
        self.split = stage_split(cfg, math.prod(data.shape), data.n_classes)
        start = sum(self.split[:rank])
        self.block_range = (start, start + self.split[rank])
        self.blocks = nn.Sequential(*net.blocks[start : start + self.split[rank]])
        self.head = net.head if self.last else None
        self.module = nn.Sequential(*self.blocks, *([self.head] if self.head is not None else []))
        self.module.train()
        self.opt = OPTIMIZERS[cfg.optimizer](self.module.parameters(), lr=cfg.lr)
        self.net = net
        # The pipelines' batches enter PipelineStage on the host (its messages are on the host; see
        # _OnDevice); every other method's are drawn from the data on the device. The batches are the same.
        if cfg.method not in PIPELINES:
            data = data.on(device)
        self.sampler = BatchSampler(data.x_train, data.y_train, cfg.batch_size, seed=cfg.seed)
        self.clock = _Clock(cfg, device)
        points = {round(i * cfg.steps / cfg.snapshots) for i in range(1, cfg.snapshots + 1)}
        if cfg.steps % cfg.in_flight == 0:  # a pipeline's optimiser step takes in_flight batches: the
            # snapshots of every method fall on multiples of in_flight, so that they compare at equal examples
            points = {max(cfg.in_flight, p - p % cfg.in_flight) for p in points}
        self.points = sorted(points)
        self.snapshots: list[dict] = []
        self.losses = Meter()  # the last stage's summed training loss per batch, read at the snapshots
        self.updates = 0

    def input_shape(self) -> tuple[int, ...]:
        return (self.cfg.batch_size, *(self.in_shape if self.rank == 0 else (self.cfg.width,)))

    def check_fail(self, step: int) -> None:
        if self.cfg.fail_at == (self.rank, step):
            raise RuntimeError(f"stage {self.rank} raised at step {step}, as fail_at={self.cfg.fail_at} asked")

    def check_loss(self, loss: torch.Tensor, step: int) -> None:
        """Keep the step's loss on the device; ``maybe_snapshot`` reads and checks it."""
        self.losses.add(loss.detach(), step)

    def maybe_snapshot(self, batches: int) -> None:
        if self.points and batches == self.points[0]:
            self.points.pop(0)
            values, steps = self.losses.flush()  # the one read of the losses since the last snapshot
            values = [v / self.cfg.batch_size for v in values]  # per example, as loss.item() / batch gave
            bad = first_non_finite(values, steps)
            if bad is not None:
                raise DivergenceError(
                    f"method={self.cfg.method!r}: the training loss became {bad[1]} at step {bad[0]}; "
                    f"try a smaller lr (now {self.cfg.lr})"
                )
            synchronize(self.device)
            self.snapshots.append({
                "batches": batches,
                "seconds": self.clock.now(),
                "state": {k: v.detach().to("cpu", copy=True) for k, v in self.module.state_dict().items()},
                "train_loss": sum(values) / len(values) if values else None,
            })

    def result(self, extra: dict) -> dict:
        synchronize(self.device)
        return {
            "rank": self.rank, "split": self.split, "block_range": self.block_range, "snapshots": self.snapshots,
            "totals": self.clock.totals, "events": self.clock.events, "elapsed": self.clock.now(),
            "updates": self.updates, **extra,
        }


def _train_bprop(stage: _Stage) -> dict:
    cfg = stage.cfg
    stage.clock.start()
    for t in range(cfg.steps):
        stage.clock.step = t
        stage.check_fail(t)
        x, y = stage.sampler.next()
        with stage.clock("compute"):
            stage.opt.zero_grad(set_to_none=True)
            loss = task_loss(stage.module(x), y)
            loss.backward()
            stage.opt.step()
        stage.updates += 1
        stage.check_loss(loss, t)
        stage.maybe_snapshot(t + 1)
    return stage.result({})


def _train_pipeline(stage: _Stage) -> dict:
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    cfg, m = stage.cfg, stage.cfg.in_flight
    # The pipeline's messages are on the host (gloo); on CUDA the module is wrapped to cross over.
    module = stage.module if stage.device.type == "cpu" else _OnDevice(stage.module, stage.device)
    pipe = PipelineStage(module, stage.rank, stage.world, torch.device("cpu"),
                         input_args=(torch.zeros(stage.input_shape()),))
    schedule = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[cfg.method](pipe, n_microbatches=m, loss_fn=task_loss)
    dist.barrier()
    stage.clock.start()
    for t in range(cfg.steps // m):
        stage.clock.step = t * m
        stage.check_fail(t * m)
        batches = [stage.sampler.next() for _ in range(m)]
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        with stage.clock("schedule step"):
            stage.opt.zero_grad(set_to_none=True)
            losses: list[torch.Tensor] = []
            if stage.rank == 0:
                schedule.step(x)
            elif stage.last:
                schedule.step(target=y, losses=losses)
            else:
                schedule.step()
            stage.opt.step()
        stage.updates += 1
        if stage.last:
            stage.check_loss(torch.stack(losses).mean(), t * m)
        stage.maybe_snapshot((t + 1) * m)
    dist.barrier()
    return stage.result({})


def _train_decoupled(stage: _Stage) -> dict:
    cfg, k, clock = stage.cfg, stage.rank, stage.clock
    iface = None
    if not stage.last:
        context = stage.n_classes if cfg.method == "cdni" else 0
        if cfg.synth_factory:
            module, name = cfg.synth_factory.split(":")
            synth = getattr(importlib.import_module(module), name)(cfg, k, stage.net, stage.split)
        else:
            synth = make_synthesizer("linear", (cfg.width,), 0, cfg.width, context_features=context)
        iface = BackwardInterface(synth, lr=cfg.synth_lr, scale=cfg.grad_scale).to(stage.device)  # in place
    forward_sends: deque = deque()  # (work, tensor): the tensor must outlive its send
    backward_sends: deque = deque()
    targets: deque = deque()  # (batch, work, buffer) per prediction awaiting its target
    late: Counter = Counter()  # batches late -> targets
    synth_losses = Meter()  # read once, at the end

    def settle(sends: deque, limit: int) -> None:
        while len(sends) > limit:
            with clock("wait for send"):
                sends.popleft()[0].wait()

    def apply_targets(t: int, drain: bool = False) -> None:
        while targets:
            b, work, buffer = targets[0]
            if not drain and (t - b < cfg.staleness if cfg.staleness else not work.is_completed()):
                return
            targets.popleft()
            with clock("wait for target"):
                work.wait()
            with clock("compute"):
                synth_losses.add(iface.update(buffer.to(stage.device)))
            late[t - b] += 1

    dist.barrier()
    clock.start()
    for t in range(cfg.steps):
        clock.step = t
        stage.check_fail(t)
        x, y = stage.sampler.next()
        ctx = one_hot(y, stage.n_classes) if cfg.method == "cdni" else None
        if k == 0:
            inp = x
        else:
            inp = torch.empty(stage.input_shape())  # on the host: gloo's messages are
            with clock("wait for input"):
                dist.recv(inp, src=k - 1, tag=0)
            inp = inp.to(stage.device).requires_grad_()  # on the CPU: the same tensor
        with clock("compute"):
            stage.opt.zero_grad(set_to_none=True)
            h = stage.blocks(inp)
            if stage.last:
                loss = task_loss(stage.head(h), y)
                loss.backward()
            else:
                message = iface.send(h, ctx).detach()  # δ̂ is in the blocks' gradients now
            stage.opt.step()  # update unlocked
        stage.updates += 1
        if stage.last:
            stage.check_loss(loss, t)
        else:
            with clock("send"):
                message = message.cpu()  # on the CPU: the same tensor; on CUDA: a copy to the host
                forward_sends.append((dist.isend(message, dst=k + 1, tag=0), message))
                buffer = torch.empty_like(message)
                targets.append((t, dist.irecv(buffer, src=k + 1, tag=1), buffer))
        if k > 0:
            grad = inp.grad.detach().cpu()
            with clock("send"):
                backward_sends.append((dist.isend(grad, dst=k - 1, tag=1), grad))
        settle(forward_sends, cfg.in_flight)
        settle(backward_sends, cfg.in_flight)
        if iface is not None:
            apply_targets(t)
        stage.maybe_snapshot(t + 1)
    if iface is not None:
        apply_targets(cfg.steps, drain=True)  # every prediction gets its target
    settle(forward_sends, 0)
    settle(backward_sends, 0)
    dist.barrier()
    return stage.result({
        "staleness": dict(sorted(late.items())),
        "synth_updates": iface.n_updates if iface is not None else 0,
        "synth_losses": synth_losses.flush()[0],
    })


def stage_device(device: str | torch.device, rank: int) -> torch.device:
    """Where stage ``rank`` computes: the CPU, or on CUDA the GPU ``(N + rank) % count`` of the
    machine's ``count`` GPUs (N: the index ``device`` names, 0 for ``cuda``)."""
    device = torch.device(device)
    if device.type != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", ((device.index or 0) + rank) % torch.cuda.device_count())


def run_stage(
    rank: int, world: int, cfg: ParallelConfig, dataset: str, out_dir: str | Path, init_method: str,
    device: str | torch.device = "cpu",
) -> Path:
    """Train stage ``rank`` of ``world`` on ``device`` (``stage_device``) and write what it recorded to
    ``out_dir/stage<rank>.pt`` (atomically). The same function serves ``train_parallel`` and ``torchrun``."""
    cfg.validate()
    device = use_device(stage_device(resolve_device(device), rank))
    torch.set_num_threads((os.cpu_count() or 1) if cfg.method == "bprop_threads" else 1)
    if world > 1:
        dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                                timeout=timedelta(seconds=cfg.comm_timeout))
    try:
        stage = _Stage(rank, world, cfg, dataset, device)
        train = {"gpipe": _train_pipeline, "1f1b": _train_pipeline, "dni": _train_decoupled, "cdni": _train_decoupled}
        result = train.get(cfg.method, _train_bprop)(stage)
        path = Path(out_dir) / f"stage{rank}.pt"
        torch.save(result, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
        return path
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _spawned(rank: int, world: int, cfg: ParallelConfig, dataset: str, out_dir: str, init_method: str,
             device: str) -> None:
    run_stage(rank, world, cfg, dataset, out_dir, init_method, device)


class _OnDevice(nn.Module):
    """A pipeline stage's module on a GPU behind host-side edges: its input is copied to the
    device and its output back to the host (PipelineStage's messages are gloo's, on the host);
    autograd carries the gradients back across both copies."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.module, self.device = module, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.device)).cpu()


# --------------------------------------------------------------------------------------------
# The launcher and what a run produced.


@dataclass
class ParallelRun:
    """One run: per snapshot the examples seen and the test error of the assembled network.
    ``to_dict`` holds what does not depend on timing; the wall-clock fields are kept beside it."""

    config: ParallelConfig
    split: list[int]
    examples: list[int] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)  # optimiser steps per stage
    synth_updates: list[int] = field(default_factory=list)  # synthesizer updates per stage
    staleness: dict[int, int] = field(default_factory=dict)  # batches late -> targets (stage 0)
    # wall-clock: not in to_dict
    seconds: list[float] = field(default_factory=list)  # at each snapshot, the slowest stage's
    elapsed: float = float("nan")  # the slowest stage's training seconds
    totals: list[dict[str, float]] = field(default_factory=list)  # per stage, seconds per activity
    events: list[list[tuple[int, str, float, float]]] = field(default_factory=list)  # per stage
    # for tests and inspection, not in to_dict
    synth_losses: list[float] = field(default_factory=list)  # stage 0's synthesizer loss at every target
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)  # the assembled network at the end

    @property
    def final_error(self) -> float:
        return self.test_error[-1]

    @property
    def throughput(self) -> float:
        """Training examples per second (the slowest stage's clock, from the start barrier to its end)."""
        return self.examples[-1] / self.elapsed

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config), "split": self.split, "examples": self.examples,
            "test_error": self.test_error, "train_loss": self.train_loss, "updates": self.updates,
            "synth_updates": self.synth_updates, "staleness": {str(k): v for k, v in self.staleness.items()},
        }


@torch.no_grad()
def _error(net: FFNet, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> float:
    net.eval()
    wrong = sum((net(x[i : i + chunk]).argmax(1) != y[i : i + chunk]).sum().item() for i in range(0, len(x), chunk))
    return wrong / len(x)


def assemble(cfg: ParallelConfig, stages: list[dict], data) -> ParallelRun:
    """The whole network at each snapshot, put together from its stages' parts, and its test error."""
    net = make_net("fcn", data.shape, cfg.depth, cfg.width, data.n_classes)
    run = ParallelRun(config=cfg, split=stages[0]["split"])
    for i in range(len(stages[0]["snapshots"])):
        parts = [s["snapshots"][i] for s in stages]
        for stage, part in zip(stages, parts):
            module = nn.Sequential(*net.blocks[slice(*stage["block_range"])],
                                   *([net.head] if stage is stages[-1] else []))
            module.load_state_dict(part["state"])
        run.examples.append(parts[0]["batches"] * cfg.batch_size)
        run.seconds.append(max(p["seconds"] for p in parts))
        run.train_loss.append(parts[-1]["train_loss"])
        run.test_error.append(_error(net, data.x_test, data.y_test))
    run.updates = [s["updates"] for s in stages]
    run.synth_updates = [s.get("synth_updates", 0) for s in stages]
    run.staleness = stages[0].get("staleness", {})
    run.elapsed = max(s["elapsed"] for s in stages)
    run.totals = [s["totals"] for s in stages]
    run.events = [s["events"] for s in stages]
    run.synth_losses = stages[0].get("synth_losses", [])
    run.final_state = {k: v.clone() for k, v in net.state_dict().items()}
    return run


def train_parallel(
    cfg: ParallelConfig, dataset: str, data=None, timeout: float | None = None, device: str | torch.device = "cpu"
) -> ParallelRun:
    """Run ``cfg`` in ``cfg.workers`` processes (spawned; one thread each, all threads for
    ``bprop_threads``) on ``dataset``, then evaluate its snapshots on ``data``'s test set
    (``data``: the loaded dataset, loaded here if None), on the CPU here.

    device: where the stages compute (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; see the module
    and ``stage_device``); an unknown device, or CUDA where there is none, is refused here.

    If a stage raises or dies, the others are stopped at once and ``StageFailedError`` says which
    stage and why; so too if the run takes longer than ``timeout`` seconds. No process outlives
    this call, and the rendezvous files go with it.
    """
    cfg.validate()
    device = str(resolve_device(device))
    world = cfg.workers
    with tempfile.TemporaryDirectory(prefix="dni-parallel-") as tmp:
        init_method = Path(tmp, "rendezvous").as_uri()
        context = mp.start_processes(_spawned, args=(world, cfg, dataset, tmp, init_method, device), nprocs=world,
                                     join=False, start_method="spawn")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not context.join(timeout=0.25):
                if deadline is not None and time.monotonic() > deadline:
                    raise StageFailedError(f"method={cfg.method!r}: the stages did not finish within timeout={timeout} s; stopped")
        except mp.ProcessRaisedException as error:
            raise StageFailedError(
                f"method={cfg.method!r}: stage {error.error_index} of {world} raised; the other stages were stopped.{error.msg}"
            ) from None
        except mp.ProcessExitedException as error:
            raise StageFailedError(
                f"method={cfg.method!r}: stage {error.error_index} of {world} died ({error.msg.strip()}); "
                "the other stages were stopped"
            ) from None
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
                process.join(5)
                if process.is_alive():
                    process.kill()
                    process.join()
        stages = [torch.load(Path(tmp, f"stage{r}.pt"), weights_only=False) for r in range(world)]
    return assemble(cfg, stages, data if data is not None else load_dataset(dataset))


def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc-per-node K -m dni_utils.trainers.parallel --method dni --out DIR`` runs one stage per
    process (RANK / WORLD_SIZE from torchrun); then ``python -m dni_utils.trainers.parallel --collect DIR``
    evaluates what they wrote. Without torchrun, ``python -m dni_utils.trainers.parallel --method dni``
    spawns the stages itself and prints the result."""
    from dni_utils.experiments.nb08_parallel_decoupled import PARALLEL_PROFILES  # notebook 08's sizes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="dni", choices=PARALLEL_METHODS)
    parser.add_argument("--profile", default="smoke", choices=tuple(PARALLEL_PROFILES))
    parser.add_argument("--out", type=Path, help="folder for the stages' files (torchrun)")
    parser.add_argument("--collect", type=Path, help="evaluate the stages' files in this folder")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (see the module)")
    args = parser.parse_args(argv)
    settings = PARALLEL_PROFILES[args.profile]
    fields = {k: v for k, v in settings.items() if k in ParallelConfig.__dataclass_fields__}
    cfg = ParallelConfig(method=args.method, **fields)
    if "RANK" in os.environ and args.collect is None:
        if args.out is None:
            parser.error("--out is required under torchrun")
        rank = int(os.environ["RANK"])
        if rank == 0:
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save(asdict(cfg), args.out / "config.pt")  # a dict: under torchrun this module is __main__
        run_stage(rank, int(os.environ["WORLD_SIZE"]), cfg, settings["dataset"], args.out, "env://", args.device)
        return 0
    if args.collect is not None:
        cfg = ParallelConfig(**torch.load(args.collect / "config.pt"))
        stages = [torch.load(p, weights_only=False) for p in sorted(args.collect.glob("stage*.pt"))]
        run = assemble(cfg, stages, load_dataset(settings["dataset"]))
    else:
        run = train_parallel(cfg, settings["dataset"], device=args.device)
    print(f"{PARALLEL_LABELS[cfg.method]}: {run.examples[-1]} examples, test error {run.final_error:.4f}, "
          f"{run.throughput:.0f} examples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
