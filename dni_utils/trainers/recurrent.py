"""Recurrent DNI: truncated BPTT with a synthetic gradient at every truncation boundary (paper
section 3.2, figure 3).

An LSTM core is unrolled over an episode in chunks of ``T`` steps. The *state* crossing a
boundary is ``s = [h, c]``, shape ``(B, 2H)``; one synthesizer reads and predicts that
concatenation (the gradient with respect to h and c together).

Chunk ``k`` starts from ``s_k`` (cut from the previous chunk's graph) and ends at ``s_{k+1}``:

    loss_k  = Σ_{t in chunk k} ℓ_t                                  (summed over the batch)
    total_k = loss_k + <s_{k+1}, scale · δ̂_{k+1}>,   δ̂_{k+1} = M(s_{k+1})   (``inject``)

One backward pass of ``total_k`` gives the core its gradients for chunk ``k`` (the core steps at
once) and, at the leaf ``s_k``, the bootstrapped regression target of the prediction made at the
previous boundary:

    δ_k = ∂loss_k/∂s_k + (∂s_{k+1}/∂s_k)ᵀ · scale · δ̂_{k+1}         (``update(target)``)

so the synthesizer learns the future gradient discounted by ``scale`` per chunk (``scale = 1`` is
the paper's undiscounted target). Only chunk ``k``'s graph (T cores) and the synthesizer are held
in memory at any time. The last chunk of an episode has no future: nothing is injected there.

``method``: ``bptt`` (plain truncated BPTT: the same code with the interface ``off``), ``dni``,
and ``dni_aux`` (DNI + Aux: as DNI, and the core has an auxiliary task: a linear head reads the
state after the first step of chunk ``k`` and predicts the synthetic gradient the chunk's end will
receive, ``δ̂_{k+1}``, i.e. T − 1 steps ahead; its squared error, weighted by ``aux_weight``, is
added to the chunk's loss, so it shapes the core's weights. The paper's exact auxiliary task was not
available to us; this is our reading of "predicting a synthetic gradient further in the future").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dni_utils.data.tasks import Curriculum, Episode, SequenceTask, bit_errors, check_task
from dni_utils.mechanism.interfaces import BackwardInterface, synthesizer_loss
from dni_utils.tools.checkpoint import Checkpoint, Meter, rng_state, set_rng_state

RNN_METHODS = ("bptt", "dni", "dni_aux")
EXACT_BOUNDS = ("gradient", "target")  # train_copy's upper bounds of DNI
RNN_METHOD_LABELS = {"bptt": "BPTT", "dni": "DNI", "dni_aux": "DNI + Aux"}


class DivergenceError(FloatingPointError):
    """The training loss stopped being a finite number."""


def check_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in RNN_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={methods!r} is invalid: expected a non-empty subset of {RNN_METHODS}")
    return list(methods)


def check_truncations(truncations: list[int], name: str = "truncations") -> list[int]:
    """A non-empty list of positive integers (truncation lengths, or periods); the error names ``name``."""
    if not truncations or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in truncations):
        raise ValueError(f"{name}={truncations!r} is invalid: expected a non-empty list of positive integers")
    return list(truncations)


class LSTMCore(nn.Module):
    """An LSTM layer and a linear read-out; the recurrent state is ``s = [h, c]``, (B, 2H).

    ``chunk`` runs the fused ``nn.LSTM`` kernel over a whole chunk of steps (one call instead of a
    Python loop of cells); ``forward`` is one step of the same LSTM. Both give the same numbers
    as a loop of ``nn.LSTMCell`` with the same weights (same gate order and initialisation).
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, aux: bool = False) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(in_features, hidden)
        self.readout = nn.Linear(hidden, out_features)
        # DNI + Aux: a linear head that predicts a future synthetic gradient from the state.
        self.aux_head = nn.Linear(2 * hidden, 2 * hidden) if aux else None

    @property
    def state_size(self) -> int:
        return 2 * self.hidden

    def initial_state(self, batch_size: int) -> torch.Tensor:
        device = self.readout.weight.device
        return torch.zeros(batch_size, self.state_size, device=device)  # (B, 2H)

    def chunk(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (t, B, in), s: (B, 2H) -> logits (t, B, out), the state after the last step (B, 2H)."""
        h0 = s[:, : self.hidden].unsqueeze(0).contiguous()  # (1, B, H)
        c0 = s[:, self.hidden :].unsqueeze(0).contiguous()
        out, (h, c) = self.lstm(x, (h0, c0))  # (t, B, H); (1, B, H) each
        return self.readout(out), torch.cat([h[0], c[0]], dim=1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (B, in), s (B, 2H) -> logits (B, out), s' (B, 2H)."""
        logits, s = self.chunk(x.unsqueeze(0), s)
        return logits[0], s


def unroll(core: nn.Module, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``core`` over the steps of ``x`` (t, B, in) from state ``s``: its fused ``chunk`` when
    it has one, else a loop of single steps. Returns the outputs (t, B, out) and the last state."""
    if hasattr(core, "chunk"):
        return core.chunk(x, s)
    outs = []
    for t in range(x.shape[0]):
        out, s = core(x[t], s)
        outs.append(out)
    return torch.stack(outs), s


class StateSynthesizer(nn.Module):
    """Synthesizer of ∂L_future/∂s: ``hidden_layers`` x (Linear, ReLU), then a zero-initialised
    Linear (zero start; ``hidden_layers=0`` is the linear synthesizer).

    squash_cell: read ``[h, tanh(c)]`` instead of ``[h, c]`` (the prediction is still the gradient
    with respect to ``[h, c]``). The LSTM's cell state is unbounded, so a synthesizer that reads it
    linearly can feed a runaway: its prediction grows with ``c`` and pushes ``c`` further.
    """

    def __init__(self, state_size: int, hidden_layers: int = 0, hidden: int = 256, squash_cell: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = state_size
        for _ in range(hidden_layers):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.trunk = nn.Sequential(*layers)
        self.out = nn.Linear(d, state_size)
        self.squash_cell = squash_cell
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.squash_cell:
            half = trigger.shape[1] // 2
            trigger = torch.cat([trigger[:, :half], torch.tanh(trigger[:, half:])], dim=1)
        return self.out(self.trunk(trigger))  # δ̂: (B, 2H)


class ExactFutureGradient(nn.Module):
    """Not a synthesizer but the quantity one models: at each truncation boundary of the current
    episode it returns the true gradient of the episode's remaining loss with respect to the state
    there, by BPTT from that state to the episode's end with the core's current weights (an upper
    bound for any synthesizer; not decoupled: it runs the rest of the episode at every boundary).

    ``start(episode)`` before each episode. The boundaries come in order: a call with a state other
    than the last one is the next boundary; a call with the same state (the interface re-predicting
    it) returns the same gradient. The core's ``.grad`` is not touched.
    """

    def __init__(self, core: nn.Module, truncation: int) -> None:
        super().__init__()
        self.core, self.truncation = [core], truncation  # a list: not a submodule (no parameters of its own)
        self.episode: Episode | None = None
        self.boundary = 0
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def start(self, episode: Episode) -> None:
        self.episode, self.boundary, self.last = episode, 0, None

    def forward(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.episode is None:
            raise RuntimeError("call start(episode) before the first boundary of an episode")
        if self.last is not None and torch.equal(self.last[0], trigger):
            return self.last[1]
        self.boundary += 1
        begin = self.boundary * self.truncation
        with torch.enable_grad():
            s = trigger.detach().requires_grad_()
            logits, _ = unroll(self.core[0], self.episode.x[begin:], s)  # (L - begin, B, out)
            (grad,) = torch.autograd.grad(sequence_loss(logits, self.episode, begin), s)
        self.last = (trigger.detach(), grad)
        return grad  # δ: (B, 2H)


def sequence_loss(logits: torch.Tensor, episode: Episode, start: int) -> torch.Tensor:
    """Sigmoid cross-entropy summed over the bits, the batch and the target steps of a chunk
    (a per-example quantity of order one per step, as in the feed-forward ``task_loss``)."""
    steps = logits.shape[0]
    y = episode.y[start : start + steps]  # (t, B, out)
    mask = episode.mask[start : start + steps].unsqueeze(-1)  # (t, B, 1)
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask).sum()


@dataclass
class EpisodeStats:
    """What one episode (or segment) gave. Its scalars stay on the device, as tensors: a trainer
    reads them with the others at once (``scalars()``, then ``summarize_episode``); the float
    properties ``loss``, ``synth_loss`` and ``aux_loss`` read them at once (one host synchronisation
    each: for tests and interactive use, not for a training loop)."""

    losses: torch.Tensor  # (chunks,) each chunk's task loss, summed over its steps and the batch, detached
    logits: torch.Tensor  # the outputs of every step, detached, (L, B, out)
    state: torch.Tensor  # the state after the last step, detached, (B, 2H)
    batch: int = 1  # sequences (streams) side by side
    synth_losses: torch.Tensor | None = None  # (n,) the synthesizer loss at each boundary with a target
    aux_losses: torch.Tensor | None = None  # (n,) DNI + Aux: the auxiliary loss of each chunk that has one
    targets: list[torch.Tensor] = field(default_factory=list)  # the regression targets (if kept)
    chunk_starts: list[torch.Tensor] = field(default_factory=list)  # the chunk start states (if kept)

    @property
    def counts(self) -> tuple[int, int, int]:
        """How many chunk losses, synthesizer losses and auxiliary losses the episode has."""
        return (self.losses.numel(), 0 if self.synth_losses is None else self.synth_losses.numel(),
                0 if self.aux_losses is None else self.aux_losses.numel())

    def scalars(self) -> torch.Tensor:
        """One 1-d tensor on the device: the chunk losses, the synthesizer losses, then the sum of
        the auxiliary losses (if any); ``summarize_episode`` turns its values into the episode's numbers."""
        parts = [self.losses]
        if self.synth_losses is not None:
            parts.append(self.synth_losses)
        if self.aux_losses is not None:
            parts.append(self.aux_losses.sum().reshape(1))  # summed on the device
        return torch.cat(parts)

    def _read(self) -> tuple[float, float, float]:
        return summarize_episode(self.scalars().tolist(), self.counts, self.batch)

    @property
    def loss(self) -> float:
        """Task loss per sequence (reads the device)."""
        return self._read()[0]

    @property
    def synth_loss(self) -> float:
        """Mean synthesizer loss over the episode's boundaries, NaN if none (reads the device)."""
        return self._read()[1]

    @property
    def aux_loss(self) -> float:
        """DNI + Aux: the auxiliary loss per chunk and sequence, NaN if none (reads the device)."""
        return self._read()[2]


def summarize_episode(values: list[float], counts: tuple[int, int, int], batch: int) -> tuple[float, float, float]:
    """(loss per sequence, mean synthesizer loss, auxiliary loss per chunk and sequence) from the
    values of ``EpisodeStats.scalars()`` read as floats, with its ``counts``: the arithmetic of the
    numbers the history records, in the same order (NaN for a quantity the episode does not have)."""
    n_loss, n_synth, n_aux = counts
    total = 0.0
    for v in values[:n_loss]:  # summed chunk by chunk, in order
        total += v
    synth = values[n_loss : n_loss + n_synth]
    synth_loss = sum(synth) / len(synth) if synth else float("nan")
    aux_loss = values[n_loss + n_synth] / n_aux / batch if n_aux else float("nan")
    return total / batch, synth_loss, aux_loss


class SeriesMeter(Meter):
    """``checkpoint.Meter`` for steps that each give several values (a 1-d tensor per step: the
    losses of a segment's chunks, say): they wait on the device until ``flush()`` reads them all at
    once (one host synchronisation per log point) and returns, per step, its values as Python floats
    (each exactly what ``.item()`` gives) with the step. Saved and restored as a ``Meter``."""

    def add(self, values: torch.Tensor, step: int) -> None:
        super().add(values.reshape(-1), step)

    def flush(self) -> list[tuple[list[float], int]]:
        flat = torch.cat(self.values).tolist() if self.values else []
        out, i = [], 0
        for v, step in zip(self.values, self.steps):
            out.append((flat[i : i + v.numel()], step))
            i += v.numel()
        self.values, self.steps = [], []
        return out


def run_episode(
    core: nn.Module,
    episode: Episode,
    truncation: int,
    interface: BackwardInterface,
    optimizer: torch.optim.Optimizer | None,
    step_each_chunk: bool = True,
    aux_weight: float = 0.0,
    keep: bool = False,
    loss_fn: Callable[[torch.Tensor, Episode, int], torch.Tensor] = sequence_loss,
    state: torch.Tensor | None = None,
    open_end: bool = False,
    true_target: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EpisodeStats:
    """Train ``core`` on one episode with truncated BPTT of ``truncation`` steps.

    interface: its synthesizer predicts the gradient at every boundary; mode ``off`` is plain
    truncated BPTT. step_each_chunk: the core's optimiser steps after every chunk (training);
    with False the gradients of all chunks accumulate in ``.grad`` and nothing steps (tests).
    aux_weight: DNI + Aux, the weight of the core's auxiliary loss (needs ``core.aux_head``).
    keep: record the synthesizer's regression targets and the chunk start states.

    A stream (the language model) is trained segment by segment with the same loop: ``state`` is
    the state carried over from the previous segment (default: the core's initial state, a new
    episode), and ``open_end=True`` makes the segment's end a boundary like any other, so the
    synthetic gradient is injected there and its prediction waits in the interface until the
    next segment's first chunk delivers its target. Copy episodes are closed: nothing comes after.

    true_target: an ablation; the synthesizer is regressed onto ``true_target(s_k)`` (the true
    future gradient, say: ``ExactFutureGradient``) instead of the bootstrapped target δ_k.
    """
    if not isinstance(truncation, int) or isinstance(truncation, bool) or truncation < 1:
        raise ValueError(f"truncation={truncation!r} is invalid: expected a positive integer")
    dni = interface.training and interface.mode != "off"
    aux = aux_weight > 0 and getattr(core, "aux_head", None) is not None
    batch = episode.x.shape[1]
    carried = state is not None
    state = core.initial_state(batch) if state is None else state  # (B, 2H)
    all_logits, losses, synth_losses, aux_losses = [], [], [], []
    targets, starts = [], []
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    for start in range(0, episode.length, truncation):
        stop = min(start + truncation, episode.length)
        s = state.detach()  # s_k: a leaf, the previous chunk's graph is gone
        has_prediction = dni and (start > 0 or (carried and interface.pending > 0))
        if has_prediction:
            s.requires_grad_()
        logits_k, s_t = unroll(core, episode.x[start:stop], s)  # (t, B, out), (B, 2H)
        loss = loss_fn(logits_k, episode, start)
        total = loss
        boundary = stop < episode.length or open_end
        if dni and boundary:
            total = total + interface.inject(s_t)  # ∂/∂s_{k+1} = scale · δ̂_{k+1}
            if aux:  # DNI + Aux: from the chunk's first state, predict δ̂_{k+1} (T − 1 steps ahead)
                with torch.no_grad():
                    next_pred = interface.synthesizer(s_t.detach())  # δ̂_{k+1}, (B, 2H)
                # The first step again, from s_k cut off, so that the auxiliary gradient reaches the
                # core's weights but not s_k.grad (the synthesizer's target stays δ_k).
                _, first = core(episode.x[start], s.detach())  # (B, 2H)
                aux_loss = aux_weight * (core.aux_head(first) - next_pred).pow(2).sum()  # summed, like the task loss
                total = total + aux_loss
                aux_losses.append(aux_loss.detach())
        if total.requires_grad:
            total.backward()
        if optimizer is not None and step_each_chunk:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if has_prediction:
            target = s.grad if s.grad is not None else torch.zeros_like(s)  # δ_k, bootstrapped
            if true_target is not None:
                target = true_target(s.detach())
            if keep:
                targets.append(target.detach().clone())
            synth_losses.append(interface.update(target))  # the synthesizer steps
            if boundary:
                # The synthesizer has just stepped: the queued prediction for s_{k+1} was made
                # with its old weights; queue it again with the new ones (the value injected
                # above stays the one the core used).
                interface.discard()
                interface.inject(s_t.detach())
        if keep:
            starts.append(s.detach().clone())
        losses.append(loss.detach())  # stays on the device (no per-chunk read)
        all_logits.append(logits_k.detach())
        state = s_t
    return EpisodeStats(
        torch.stack(losses), torch.cat(all_logits), state.detach(), batch,
        torch.stack(synth_losses) if synth_losses else None, torch.stack(aux_losses) if aux_losses else None,
        targets=targets, chunk_starts=starts,
    )


def check_recurrent_config(cfg, positive: tuple[str, ...]):
    """Check the settings every recurrent config shares (method, synthesizer, learning rates) and
    the positive integers ``positive``; returns ``cfg``. Errors name the field and what is allowed."""
    check_methods([cfg.method])
    for name in positive:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
    if not isinstance(cfg.synth_hidden_layers, int) or cfg.synth_hidden_layers < 0:
        raise ValueError(f"synth_hidden_layers={cfg.synth_hidden_layers!r} is invalid: expected an integer >= 0")
    for name in ("lr", "synth_lr", "grad_scale", "aux_weight"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is invalid: expected a positive number")
    return cfg


@dataclass
class RNNConfig:
    method: str = "dni"  # bptt | dni | dni_aux
    task: str = "copy"  # copy | repeat_copy
    truncation: int = 3  # T, steps per chunk
    hidden: int = 256  # LSTM units
    width: int = 8  # bits per vector
    max_repeats: int = 2  # Repeat Copy: R uniform in 1..max_repeats
    batch_size: int = 32  # sequences per batch (one length per batch)
    batches: int = 10_000  # training budget, in batches
    lr: float = 3e-3  # Adam, core
    synth_lr: float = 1e-3  # Adam, synthesizer
    synth_hidden_layers: int = 0  # hidden layers of the synthesizer (0 = linear)
    synth_hidden: int = 256
    synth_steps: int = 1  # the synthesizer's optimiser steps per regression target
    grad_scale: float = 0.1  # factor on the injected synthetic gradient (and the per-chunk discount)
    aux_weight: float = 0.1  # DNI + Aux: weight of the auxiliary loss
    threshold: float = 0.15  # bits error per sequence at which a length is solved
    window: int = 20  # batches averaged for the solved test
    max_length: int = 1000  # curriculum ceiling
    log_every: int = 100  # batches between log points
    fused_adam: bool = True  # the fused Adam kernel for the core and the synthesizer (``adam``)
    seed: int = 0

    def validate(self) -> RNNConfig:
        check_task(self.task)
        return check_recurrent_config(self, ("truncation", "hidden", "width", "max_repeats", "batch_size", "batches",
                                             "synth_hidden", "synth_steps", "window", "max_length", "log_every"))

    def train_steps(self) -> int:
        """Training iterations of the run: one per batch."""
        return self.batches

    def capped(self, n: int) -> RNNConfig:
        """The same run cut to at most ``n`` batches (its log interval too): a dry run or a warm-up."""
        return dataclasses.replace(self, batches=min(self.batches, n), log_every=min(self.log_every, n))


@dataclass
class RNNRun:
    config: RNNConfig
    score: int = 0  # longest length solved within the budget
    solved_at: list[list[int]] = field(default_factory=list)  # [batch, length] each time a length was solved
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "score": self.score, "solved_at": self.solved_at,
                "history": self.history}


def adam(lr: float, fused: bool = False) -> Callable[..., torch.optim.Optimizer]:
    """An Adam factory. fused: torch's fused Adam kernel (one call for all the parameters instead
    of a Python loop over them, on the CPU as on CUDA): the same update to float rounding
    (``tests/test_copytable.py`` compares the two), and about a tenth less time per chunk of a small
    LSTM, where the optimiser steps after every chunk."""
    return lambda params: torch.optim.Adam(params, lr=lr, fused=fused or None)


def build_recurrent(
    in_features: int, out_features: int, method: str, hidden: int, lr: float, synth_lr: float,
    synth_hidden_layers: int, synth_hidden: int, grad_scale: float, squash_cell: bool = False,
    fused: bool = False, synth_steps: int = 1,
) -> tuple[LSTMCore, BackwardInterface, torch.optim.Optimizer]:
    """The core, the interface at its truncation boundaries and the core's optimiser, for any
    recurrent task (Copy, Repeat Copy, the language model): ``bptt`` is the interface ``off``.
    fused: both Adam optimisers use the fused kernel (see ``adam``). synth_steps: the
    synthesizer's optimiser steps per target (``BackwardInterface.steps``)."""
    check_methods([method])
    core = LSTMCore(in_features, hidden, out_features, aux=method == "dni_aux")
    synth = StateSynthesizer(core.state_size, synth_hidden_layers, synth_hidden, squash_cell)
    mode = "off" if method == "bptt" else "dni"
    interface = BackwardInterface(synth, lr=synth_lr, scale=grad_scale, mode=mode, optimizer=adam(synth_lr, fused),
                                  steps=synth_steps)
    optimizer = adam(lr, fused)(core.parameters())  # the core (and its aux head)
    return core, interface, optimizer


def build(cfg: RNNConfig) -> tuple[SequenceTask, LSTMCore, BackwardInterface, torch.optim.Optimizer]:
    """The task, the core, the interface and the optimisers of one run (seeded by ``cfg.seed``)."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    task = SequenceTask(cfg.task, cfg.width, cfg.max_repeats)
    core, interface, optimizer = build_recurrent(
        task.in_features, task.out_features, cfg.method, cfg.hidden, cfg.lr, cfg.synth_lr, cfg.synth_hidden_layers,
        cfg.synth_hidden, cfg.grad_scale, fused=cfg.fused_adam, synth_steps=cfg.synth_steps,
    )
    return task, core, interface, optimizer


def train_copy(
    cfg: RNNConfig, data: None = None, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None, checkpoint: Checkpoint | None = None, exact: str | None = None,
) -> RNNRun:
    """Train one LSTM on the curriculum for ``cfg.batches`` batches; the score is the longest length solved.

    exact: the upper bounds of a ``dni`` run (``EXACT_BOUNDS``). ``"gradient"``: the interface
    injects the true future gradient at every boundary (``ExactFutureGradient``, scaled by
    ``grad_scale`` like a prediction) instead of the synthesizer's: what DNI would reach with a
    perfect synthesizer. ``"target"``: the synthesizer is regressed onto that true gradient instead
    of the bootstrapped target (and its predictions are injected as usual): what is left when
    bootstrapping is taken out.

    data: unused (Copy generates its sequences; the argument lets ``runner.train_many`` call it).
    device: where it trains (None: the CPU). The sequences are drawn on the host, from a generator
    of the run's own (the curriculum's length and Repeat Copy's R decide the shapes), then moved.
    checkpoint: save the run's whole state when due and resume from the saved state if there is
    one (the final run is the same either way).

    One host read per batch, inherent to the curriculum: the length of the next batch depends on
    this batch's bits error, so it is read before the next batch is drawn; the batch's losses ride
    along in the same read (one synchronisation per batch, not one per value). Raises
    ``DivergenceError`` if the loss becomes NaN or infinite, at that batch.
    """
    if data is not None:
        raise ValueError(f"data={type(data).__name__} is invalid: Copy generates its sequences, expected None")
    device = torch.device(device or "cpu")
    task, core, interface, optimizer = build(cfg)  # built on the CPU from the seed, then moved
    oracle = None
    if exact is not None:
        if exact not in EXACT_BOUNDS:
            raise ValueError(f"exact={exact!r} is unknown: expected None or one of {EXACT_BOUNDS}")
        if cfg.method != "dni":
            raise ValueError(f"method={cfg.method!r} is invalid with exact={exact!r}: expected 'dni'")
        oracle = ExactFutureGradient(core, cfg.truncation)
        if exact == "gradient":
            interface.synthesizer, interface.optimizer = oracle, None
    core.to(device)
    interface.to(device)
    curriculum = Curriculum(cfg.threshold, cfg.window, 1, cfg.max_length)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    run = RNNRun(config=cfg)
    core.train()
    interface.train()
    acc: dict[str, list[float]] = {"loss": [], "bit_errors": [], "synth_loss": [], "aux_loss": []}
    first = 1
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        core.load_state_dict(saved["core"])
        optimizer.load_state_dict(saved["optimizer"])
        interface.load_checkpoint_state(saved["interface"])
        set_rng_state(saved["rng"], gen)
        curriculum.load_state_dict(saved["curriculum"])
        run.solved_at, run.history, acc = saved["solved_at"], saved["history"], saved["acc"]
        first = saved["step"] + 1
    aux_weight = cfg.aux_weight if cfg.method == "dni_aux" else 0.0
    bar = tqdm(range(first, cfg.batches + 1), desc=desc or cfg.method, disable=not progress, mininterval=5,
               leave=False)
    for b in bar:
        n = curriculum.n
        episode = task.sample(n, cfg.batch_size, gen)
        episode = Episode(*(t.to(device, non_blocking=True) for t in (episode.x, episode.y, episode.mask)))
        if oracle is not None:
            oracle.start(episode)
        stats = run_episode(core, episode, cfg.truncation, interface, optimizer, aux_weight=aux_weight,
                            true_target=oracle if exact == "target" else None)
        errors = bit_errors(stats.logits, episode).mean().reshape(1)
        read = torch.cat([errors, stats.scalars()]).tolist()  # the one host read of the batch (see above)
        errors = read[0]
        loss, synth_loss, aux_loss = summarize_episode(read[1:], stats.counts, stats.batch)
        if not math.isfinite(loss):
            raise DivergenceError(
                f"method={cfg.method!r}, T={cfg.truncation}: the training loss became {loss} at batch {b}; "
                f"try a smaller lr (now {cfg.lr}) or grad_scale (now {cfg.grad_scale})"
            )
        for k, v in (("loss", loss), ("bit_errors", errors), ("synth_loss", synth_loss), ("aux_loss", aux_loss)):
            if math.isfinite(v):
                acc[k].append(v)
        if curriculum.record(errors):
            run.solved_at.append([b, n])
        if b % cfg.log_every == 0 or b == cfg.batches:
            run.history.append({"batch": b, "length": curriculum.n, "solved": curriculum.solved,
                                **{k: (sum(v) / len(v) if v else None) for k, v in acc.items()}})
            bar.set_postfix(n=curriculum.n, err=f"{run.history[-1]['bit_errors']:.2f}")
            acc = {k: [] for k in acc}
        if checkpoint is not None and b < cfg.batches and checkpoint.due(b):
            checkpoint.save({
                "step": b, "core": core.state_dict(), "optimizer": optimizer.state_dict(),
                "interface": interface.checkpoint_state(), "rng": rng_state(gen),
                "curriculum": curriculum.state_dict(), "solved_at": run.solved_at, "history": run.history, "acc": acc,
            })
    run.score = curriculum.solved
    return run


def train_copy_exact_gradient(cfg: RNNConfig, data: None = None, progress: bool = True, desc: str | None = None,
                              device: torch.device | str | None = None, checkpoint=None) -> RNNRun:
    """``train_copy`` with ``exact="gradient"`` (module level, for ``runner.train_many``)."""
    return train_copy(cfg, data, progress=progress, desc=desc, device=device, checkpoint=checkpoint, exact="gradient")


def train_copy_exact_target(cfg: RNNConfig, data: None = None, progress: bool = True, desc: str | None = None,
                            device: torch.device | str | None = None, checkpoint=None) -> RNNRun:
    """``train_copy`` with ``exact="target"`` (module level, for ``runner.train_many``)."""
    return train_copy(cfg, data, progress=progress, desc=desc, device=device, checkpoint=checkpoint, exact="target")
