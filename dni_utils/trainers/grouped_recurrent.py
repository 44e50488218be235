"""Grouped recurrent runs: R Copy / Repeat Copy runs (or R language-model runs) that differ only in
their seed train as ONE model.

The recurrent counterpart of ``trainers.grouped`` (read that first). Every parameter of the group
carries the runs in its first dimension; the recurrent state crossing a boundary is ``(B, R, 2H)``
(the runs in dimension 1, as the grouped feed-forward activations), so the ``BackwardInterface``
with ``runs=R`` and ``GroupedAdam`` serve it unchanged:

- ``GroupedLSTMCore``: R ``LSTMCore`` as one. The inputs of a chunk are projected at once,
  ``xproj = b_ih + b_hh + x W_ih`` with one ``baddbmm`` ``(R, t*B, in) x (R, in, 4H)``, then per step
  ``gates = xproj[:, t] + h W_hh`` (one ``bmm``) and the element-wise gate maths of ``nn.LSTM``
  (gate order i, f, g, o): ``c' = σ(f)·c + σ(i)·tanh(g)``, ``h' = σ(o)·tanh(c')``;
- ``GroupedStateSynthesizer``: R ``StateSynthesizer`` as one (``grouped.group_layers``);
- each run keeps its own curriculum, so its own episode length ``L_r`` at every batch. The group's
  episode is padded to the longest, ``(L_max, B, R, ·)``, with a zero loss mask on the padding;
  chunk ``k`` (steps ``kT .. kT+T-1``) is *active* for run r while ``kT < L_r`` and ends at a
  *boundary* of run r while ``kT + T < L_r``. A run's task loss, injected synthetic gradient,
  auxiliary loss and synthesizer update count only where its chunk is active (its boundary, for the
  injection and the auxiliary loss), and ``GroupedAdam`` steps only the runs whose chunk is active:
  a run whose episode has ended neither learns nor moves (parameters, moments and step count).

Each run's modules are built by ``recurrent.build`` from its seed and copied in, each run draws its
episodes from its own generator, so a grouped run equals the ungrouped ``train_copy`` run of the
same seed to float tolerance (``tests/test_grouped_recurrent.py``, in float64). Every method of
notebook 05 groups: ``bptt``, ``dni``, ``dni_aux`` and DNI's two exact bounds (``ExactFutureGradient``
runs on the grouped core and episode as on one run). Not kept: checkpoints of an unfinished group
(a group that is interrupted starts again; its finished runs are checkpointed one by one).

The language model (``train_lm_group``, notebook 06) runs through the same episode loop: every run
reads the same streams (one length for all, no padding), carries its own state across segments,
and is evaluated by its own ``LSTMCore`` with the group's weights copied in.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dni_utils.data.tasks import Curriculum, Episode, bit_errors
from dni_utils.data.text import TextCorpus, bits_per_character
from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.tools.device import timer
from dni_utils.trainers.grouped import GroupedAdam, GroupedLinear, group_layers
from dni_utils.trainers.language_model import LMConfig, LMRun, batchify, char_episode, evaluate_bpc
from dni_utils.trainers.recurrent import (
    EXACT_BOUNDS, DivergenceError, ExactFutureGradient, LSTMCore, RNNConfig, RNNRun, StateSynthesizer, build,
    build_recurrent, summarize_episode,
)
from dni_utils.trainers.timescales import TimescaleConfig


class GroupedLSTMCore(nn.Module):
    """R ``LSTMCore`` (LSTM layer, read-out, optional auxiliary head) as one; the state is
    ``s = [h, c]``, ``(B, R, 2H)``."""

    def __init__(self, cores: list[LSTMCore]) -> None:
        super().__init__()
        first = cores[0]
        self.runs, self.hidden = len(cores), first.hidden
        lstms = [c.lstm for c in cores]
        self.w_ih = nn.Parameter(torch.stack([l.weight_ih_l0.detach().t() for l in lstms]).contiguous())  # (R, in, 4H)
        self.w_hh = nn.Parameter(torch.stack([l.weight_hh_l0.detach().t() for l in lstms]).contiguous())  # (R, H, 4H)
        self.b_ih = nn.Parameter(torch.stack([l.bias_ih_l0.detach() for l in lstms]).unsqueeze(1).contiguous())  # (R, 1, 4H)
        self.b_hh = nn.Parameter(torch.stack([l.bias_hh_l0.detach() for l in lstms]).unsqueeze(1).contiguous())
        self.readout = GroupedLinear([c.readout for c in cores])
        self.aux_head = GroupedLinear([c.aux_head for c in cores]) if first.aux_head is not None else None

    @property
    def state_size(self) -> int:
        return 2 * self.hidden

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.w_ih.new_zeros(batch_size, self.runs, self.state_size)  # (B, R, 2H)

    def chunk(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (t, B, R, in), s: (B, R, 2H) -> logits (t, B, R, out), the state after the last step (B, R, 2H)."""
        t, b, r, n_in = x.shape
        hid = self.hidden
        xs = x.permute(2, 0, 1, 3).reshape(r, t * b, n_in)  # (R, t*B, in)
        xproj = torch.baddbmm(self.b_ih + self.b_hh, xs, self.w_ih).view(r, t, b, 4 * hid)  # b_ih + b_hh + x W_ih
        h = s[..., :hid].transpose(0, 1)  # (R, B, H)
        c = s[..., hid:].transpose(0, 1)
        outs = []
        for k in range(t):
            gates = xproj[:, k] + torch.bmm(h, self.w_hh)  # (R, B, 4H)
            i, f, g, o = gates.chunk(4, dim=2)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # c' = σ(f)·c + σ(i)·tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)  # h' = σ(o)·tanh(c')
            outs.append(h)
        out = torch.stack(outs, 1).reshape(r, t * b, hid)  # (R, t*B, H)
        logits = torch.baddbmm(self.readout.bias.unsqueeze(1), out, self.readout.weight)  # (R, t*B, out)
        logits = logits.view(r, t, b, -1).permute(1, 2, 0, 3)  # (t, B, R, out)
        return logits, torch.cat([h, c], dim=2).transpose(0, 1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (B, R, in), s (B, R, 2H) -> logits (B, R, out), s' (B, R, 2H)."""
        logits, s = self.chunk(x.unsqueeze(0), s)
        return logits[0], s

    @torch.no_grad()
    def copy_to(self, r: int, core: LSTMCore) -> None:
        """Run r's weights into the ungrouped ``core``."""
        core.lstm.weight_ih_l0.copy_(self.w_ih[r].t())
        core.lstm.weight_hh_l0.copy_(self.w_hh[r].t())
        core.lstm.bias_ih_l0.copy_(self.b_ih[r, 0])
        core.lstm.bias_hh_l0.copy_(self.b_hh[r, 0])
        self.readout.copy_to(r, core.readout)
        if self.aux_head is not None:
            self.aux_head.copy_to(r, core.aux_head)


class GroupedStateSynthesizer(nn.Module):
    """R ``StateSynthesizer`` as one: trigger ``(B, R, 2H)`` -> δ̂ ``(B, R, 2H)``."""

    def __init__(self, synths: list[StateSynthesizer]) -> None:
        super().__init__()
        self.runs, self.squash_cell = len(synths), synths[0].squash_cell
        self.trunk = group_layers([s.trunk for s in synths])
        self.out = group_layers([s.out for s in synths])

    def forward(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.squash_cell:
            half = trigger.shape[2] // 2
            trigger = torch.cat([trigger[..., :half], torch.tanh(trigger[..., half:])], dim=2)
        return self.out(self.trunk(trigger))

    @torch.no_grad()
    def copy_to(self, r: int, synth: StateSynthesizer) -> None:
        self.trunk.copy_to(r, synth.trunk)
        self.out.copy_to(r, synth.out)


def stack_episodes(episodes: list[Episode]) -> Episode:
    """The runs' episodes as one, padded to the longest: x (L_max, B, R, in), y (L_max, B, R, out),
    mask (L_max, B, R), zero on the padding."""
    length, b = max(e.length for e in episodes), episodes[0].x.shape[1]
    r = len(episodes)
    x = episodes[0].x.new_zeros(length, b, r, episodes[0].x.shape[2])
    y = episodes[0].y.new_zeros(length, b, r, episodes[0].y.shape[2])
    mask = episodes[0].mask.new_zeros(length, b, r)
    for k, e in enumerate(episodes):
        x[: e.length, :, k], y[: e.length, :, k], mask[: e.length, :, k] = e.x, e.y, e.mask
    return Episode(x, y, mask)


def run_losses(logits: torch.Tensor, episode: Episode, start: int) -> torch.Tensor:
    """``recurrent.sequence_loss`` of each run, (R,): logits (t, B, R, out) of the grouped episode."""
    steps = logits.shape[0]
    y = episode.y[start : start + steps]  # (t, B, R, out)
    mask = episode.mask[start : start + steps].unsqueeze(-1)  # (t, B, R, 1)
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask).sum((0, 1, 3))


class GroupEpisode:
    """What one grouped episode gave, on the device, with the host masks that say which of its
    values belong to which run (``values(r)``: run r's numbers in ``EpisodeStats.scalars`` order)."""

    def __init__(
        self, losses: torch.Tensor, active: list[list[bool]], synth_losses: torch.Tensor | None,
        synth_active: list[list[bool]], aux_losses: torch.Tensor | None, boundaries: list[list[bool]],
        logits: torch.Tensor, batch: int, state: torch.Tensor | None = None,
    ) -> None:
        self.losses, self.active = losses, active  # (chunks, R) on the device; per chunk, which runs it is part of
        self.synth_losses, self.synth_active = synth_losses, synth_active  # (updates, R) or None; per update, who learnt
        self.aux_losses, self.boundaries = aux_losses, boundaries  # (R,) summed over chunks, or None; per aux chunk
        self.logits, self.batch = logits, batch  # (L_max, B, R, out)
        self.state = state  # the state after the last step, detached, (B, R, 2H)

    def scalars(self) -> torch.Tensor:
        parts = [self.losses.reshape(-1)]
        if self.synth_losses is not None:
            parts.append(self.synth_losses.reshape(-1))
        if self.aux_losses is not None:
            parts.append(self.aux_losses)
        return torch.cat(parts)

    def per_run(self, flat: list[float]) -> list[tuple[list[float], tuple[int, int, int]]]:
        """(values, counts) of each run for ``summarize_episode``, from ``scalars()`` read as floats."""
        runs = len(self.active[0])
        n_loss, n_synth = len(self.active) * runs, len(self.synth_active) * runs
        out = []
        for r in range(runs):
            losses = [flat[k * runs + r] for k, on in enumerate(self.active) if on[r]]
            synth = [flat[n_loss + k * runs + r] for k, on in enumerate(self.synth_active) if on[r]]
            n_aux = sum(on[r] for on in self.boundaries) if self.aux_losses is not None else 0
            aux = [flat[n_loss + n_synth + r]] if n_aux else []
            out.append((losses + synth + aux, (len(losses), len(synth), n_aux)))
        return out


def _mask(flags: list[bool], device: torch.device) -> torch.Tensor | None:
    """None when every run is on (GroupedAdam's one-count path), else the (R,) bool mask."""
    return None if all(flags) else torch.tensor(flags, dtype=torch.bool, device=device)


def run_group_episode(
    core: GroupedLSTMCore, episode: Episode, lengths: list[int], truncation: int, interface: BackwardInterface,
    optimizer: GroupedAdam, aux_optimizer: GroupedAdam | None = None, aux_weight: float = 0.0, true_target=None,
    loss_fn=None, state: torch.Tensor | None = None, open_end: bool = False,
) -> GroupEpisode:
    """``recurrent.run_episode`` for a group: each run's episode of ``lengths[r]`` steps, padded in
    ``episode`` (``stack_episodes``); the core's optimiser steps after every chunk the runs whose
    chunk is active, the auxiliary head's (DNI + Aux) those whose chunk ends at a boundary.
    loss_fn: each run's loss of a chunk, (R,) (default ``run_losses``); state and open_end: a
    stream's segment, as in ``run_episode`` (the language model: every run's segment has the same
    length)."""
    dni = interface.training and interface.mode != "off"
    aux = aux_weight > 0 and core.aux_head is not None
    batch, runs, device = episode.x.shape[1], core.runs, episode.x.device
    loss_fn = loss_fn or run_losses
    carried = state is not None
    state = core.initial_state(batch) if state is None else state  # (B, R, 2H)
    losses, active_all, synth_losses, synth_active, aux_losses, boundaries, all_logits = [], [], [], [], [], [], []
    optimizer.zero_grad(set_to_none=True)
    if aux_optimizer is not None:
        aux_optimizer.zero_grad(set_to_none=True)
    for start in range(0, episode.length, truncation):
        stop = min(start + truncation, episode.length)
        active = [start < n for n in lengths]  # this chunk is part of run r's episode
        boundary = [stop < n or open_end for n in lengths]  # ... and ends at one of its boundaries
        s = state.detach()  # s_k: a leaf
        has_prediction = dni and (start > 0 or (carried and interface.pending > 0))
        if has_prediction:
            s.requires_grad_()
        logits_k, s_t = core.chunk(episode.x[start:stop], s)  # (t, B, R, out), (B, R, 2H)
        loss = loss_fn(logits_k, episode, start)  # (R,)
        total = loss.sum()
        on_boundary = _mask(boundary, device)
        if dni and any(boundary):
            # inject scale·δ̂ only into the runs whose chunk ends at a boundary (the others' states are cut)
            h = s_t if on_boundary is None else torch.where(on_boundary.view(1, runs, 1), s_t, s_t.detach())
            total = total + interface.inject(h)
            if aux:  # DNI + Aux (recurrent.run_episode): predict δ̂_{k+1} from the chunk's first state
                with torch.no_grad():
                    next_pred = interface.synthesizer(s_t.detach())  # (B, R, 2H)
                _, first = core(episode.x[start], s.detach())
                aux_loss = aux_weight * (core.aux_head(first) - next_pred).pow(2).sum((0, 2))  # (R,)
                if on_boundary is not None:
                    aux_loss = torch.where(on_boundary, aux_loss, torch.zeros_like(aux_loss))
                total = total + aux_loss.sum()
                aux_losses.append(aux_loss.detach())
                boundaries.append(boundary)
        if total.requires_grad:
            total.backward()
        optimizer.step(_mask(active, device))
        optimizer.zero_grad(set_to_none=True)
        if aux_optimizer is not None:
            if any(boundary) and aux:
                aux_optimizer.step(on_boundary)
            aux_optimizer.zero_grad(set_to_none=True)
        if has_prediction:
            target = s.grad if s.grad is not None else torch.zeros_like(s)  # δ_k, bootstrapped, per run
            if true_target is not None:
                target = true_target(s.detach())
            if interface.optimizer is not None:
                interface.optimizer.mask = _mask(active, device)  # only the runs whose chunk is active learn
            synth_losses.append(interface.update(target))  # (R,)
            synth_active.append(active)
            if any(boundary):  # queue the next prediction again, with the synthesizer's new weights
                interface.discard()
                interface.inject(s_t.detach())
        losses.append(loss.detach())
        active_all.append(active)
        all_logits.append(logits_k.detach())
        state = s_t
    return GroupEpisode(
        torch.stack(losses), active_all, torch.stack(synth_losses) if synth_losses else None, synth_active,
        torch.stack(aux_losses).sum(0) if aux_losses else None, boundaries, torch.cat(all_logits), batch,
        state.detach(),
    )


# ---------------------------------------------------------------------------------------------
# Which runs group, and the grouped train_copy.

#: Config fields that may differ between the runs of one group (Copy, language model, two timescales).
PER_RUN = ("seed",)


def group_key(cfg: RNNConfig | LMConfig | TimescaleConfig) -> str:
    """What runs must share to train as one group: every field but the seed (every Copy,
    language-model and two-timescale config can be grouped; ``grouped_timescales`` uses it too)."""
    fields = asdict(cfg)
    for name in PER_RUN:
        fields.pop(name)
    return repr(sorted(fields.items()))


def check_group(cfgs: list[RNNConfig], exact: str | None = None) -> None:
    if not cfgs:
        raise ValueError("a group needs at least one run")
    if exact is not None:
        if exact not in EXACT_BOUNDS:
            raise ValueError(f"exact={exact!r} is unknown: expected None or one of {EXACT_BOUNDS}")
        if cfgs[0].method != "dni":
            raise ValueError(f"method={cfgs[0].method!r} is invalid with exact={exact!r}: expected 'dni'")
    if len({group_key(c) for c in cfgs}) > 1:
        raise ValueError(f"the runs of a group may differ only in {PER_RUN}")


def groups(cfgs: list[RNNConfig] | list[LMConfig] | list[TimescaleConfig]) -> list[list[int]]:
    """The indices of ``cfgs`` in groups that can train together, in order of first appearance."""
    out: list[list[int]] = []
    by_key: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        key = group_key(cfg)
        if key in by_key:
            by_key[key].append(i)
        else:
            by_key[key] = [i]
            out.append(by_key[key])
    return out


class GroupedCopyTrainer:
    """R ``train_copy`` runs of one configuration (seeds aside) as one model (see the module)."""

    def __init__(self, cfgs: list[RNNConfig], device: torch.device | str = "cpu", exact: str | None = None) -> None:
        check_group(cfgs, exact)
        for c in cfgs:
            c.validate()
        self.cfg, self.runs, self.exact = cfgs[0], len(cfgs), exact
        self.device = torch.device(device)
        cfg, r = self.cfg, self.runs
        members = [build(c) for c in cfgs]  # each run's task and modules, from its seed, on the CPU
        self.tasks = [m[0] for m in members]
        self.members = [m[1] for m in members]  # the ungrouped cores (for copy_to)
        self.core = GroupedLSTMCore(self.members)
        synth = GroupedStateSynthesizer([m[2].synthesizer for m in members])
        self.interface = BackwardInterface(
            synth, lr=cfg.synth_lr, scale=cfg.grad_scale, mode="off" if cfg.method == "bptt" else "dni",
            optimizer=lambda params: GroupedAdam(params, r, lr=cfg.synth_lr), steps=cfg.synth_steps, runs=r,
        )
        self.oracle = None
        if exact is not None:
            self.oracle = ExactFutureGradient(self.core, cfg.truncation)
            if exact == "gradient":
                self.interface.synthesizer, self.interface.optimizer = self.oracle, None
        self.core.to(self.device)
        self.interface.to(self.device)
        main = [p for name, p in self.core.named_parameters() if not name.startswith("aux_head.")]
        self.optimizer = GroupedAdam(main, r, lr=cfg.lr)
        self.aux_optimizer = GroupedAdam(self.core.aux_head.parameters(), r, lr=cfg.lr) if self.core.aux_head else None
        self.aux_weight = cfg.aux_weight if cfg.method == "dni_aux" else 0.0

    def train(self) -> None:
        self.core.train()
        self.interface.train()

    def episode(self, episodes: list[Episode]) -> tuple[GroupEpisode, Episode]:
        """Train on one episode per run; returns what it gave and the grouped (padded) episode."""
        episode = stack_episodes(episodes)
        episode = Episode(*(t.to(self.device, non_blocking=True) for t in (episode.x, episode.y, episode.mask)))
        if self.oracle is not None:
            self.oracle.start(episode)
        stats = run_group_episode(
            self.core, episode, [e.length for e in episodes], self.cfg.truncation, self.interface, self.optimizer,
            self.aux_optimizer, self.aux_weight, true_target=self.oracle if self.exact == "target" else None,
        )
        return stats, episode


def train_copy_group(
    cfgs: list[RNNConfig], data: None = None, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None, exact: str | None = None,
) -> list[RNNRun]:
    """Train the runs ``cfgs`` (one configuration, their seeds aside) as one grouped model; returns
    one ``RNNRun`` per config, each what ``recurrent.train_copy(cfg, exact=exact)`` gives for it to
    float tolerance. One host read per batch, as ``train_copy`` (every run's curriculum needs it)."""
    if data is not None:
        raise ValueError(f"data={type(data).__name__} is invalid: Copy generates its sequences, expected None")
    group = GroupedCopyTrainer(list(cfgs), torch.device(device or "cpu"), exact)
    cfg, r = group.cfg, group.runs
    curricula = [Curriculum(c.threshold, c.window, 1, c.max_length) for c in cfgs]
    gens = [torch.Generator().manual_seed(c.seed + 1) for c in cfgs]
    runs = [RNNRun(config=c) for c in cfgs]
    group.train()
    keys = ("loss", "bit_errors", "synth_loss", "aux_loss")
    accs = [{k: [] for k in keys} for _ in range(r)]
    bar = tqdm(range(1, cfg.batches + 1), desc=desc or f"{cfg.method} x{r}", disable=not progress, mininterval=5,
               leave=False)
    for b in bar:
        ns = [c.n for c in curricula]
        stats, episode = group.episode([t.sample(n, cfg.batch_size, g) for t, n, g in zip(group.tasks, ns, gens)])
        errors = bit_errors(stats.logits, episode).mean(0)  # (R,)
        read = torch.cat([errors, stats.scalars()]).tolist()  # the one host read of the batch
        for k, (values, counts) in enumerate(stats.per_run(read[r:])):
            loss, synth_loss, aux_loss = summarize_episode(values, counts, stats.batch)
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"method={cfg.method!r}, T={cfg.truncation}, seed={cfgs[k].seed}: the training loss became "
                    f"{loss} at batch {b}; try a smaller lr (now {cfg.lr}) or grad_scale (now {cfg.grad_scale})"
                )
            for name, v in zip(keys, (loss, read[k], synth_loss, aux_loss)):
                if math.isfinite(v):
                    accs[k][name].append(v)
            if curricula[k].record(read[k]):
                runs[k].solved_at.append([b, ns[k]])
        if b % cfg.log_every == 0 or b == cfg.batches:
            for k, run in enumerate(runs):
                run.history.append({"batch": b, "length": curricula[k].n, "solved": curricula[k].solved,
                                    **{n: (sum(v) / len(v) if v else None) for n, v in accs[k].items()}})
            accs = [{k: [] for k in keys} for _ in range(r)]
    for run, curriculum in zip(runs, curricula):
        run.score = curriculum.solved
    return runs


# ---------------------------------------------------------------------------------------------
# The grouped language model (notebook 06): every run reads the same streams, each carries its own
# state across segments.


def char_losses(logits: torch.Tensor, episode: Episode, start: int) -> torch.Tensor:
    """``language_model.char_loss`` of each run, (R,): logits (t, B, R, V), targets (t, B) shared."""
    t, b, r, v = logits.shape
    y = episode.y[start : start + t].reshape(t * b, 1).expand(t * b, r)  # (t*B, R)
    return F.cross_entropy(logits.reshape(t * b, r, v).permute(0, 2, 1), y, reduction="none").sum(0)


def build_lm_group(
    cfgs: list[LMConfig], n_vocab: int, device: torch.device,
) -> tuple[GroupedLSTMCore, BackwardInterface, GroupedAdam, GroupedAdam | None, list[LSTMCore]]:
    """The grouped core, interface and optimisers (the core's, the auxiliary head's or None) of
    the runs ``cfgs``, each run's modules built from its seed as ``train_lm`` builds them, and
    each run's own ``LSTMCore`` (for its evaluation), on ``device``."""
    cfg, r, v = cfgs[0], len(cfgs), n_vocab
    members = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        members.append(build_recurrent(v, v, c.method, c.hidden, c.lr, c.synth_lr, c.synth_hidden_layers,
                                       c.synth_hidden, c.grad_scale, c.squash_cell))
    core = GroupedLSTMCore([m[0] for m in members]).to(device)
    interface = BackwardInterface(
        GroupedStateSynthesizer([m[1].synthesizer for m in members]), lr=cfg.synth_lr, scale=cfg.grad_scale,
        mode="off" if cfg.method == "bptt" else "dni", optimizer=lambda params: GroupedAdam(params, r, lr=cfg.synth_lr),
        runs=r,
    ).to(device)
    optimizer = GroupedAdam([p for n, p in core.named_parameters() if not n.startswith("aux_head.")], r, lr=cfg.lr)
    aux_optimizer = GroupedAdam(core.aux_head.parameters(), r, lr=cfg.lr) if core.aux_head is not None else None
    return core, interface, optimizer, aux_optimizer, [m[0].to(device) for m in members]


def train_lm_group(
    cfgs: list[LMConfig], corpus: TextCorpus, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None,
) -> list[LMRun]:
    """Train the runs ``cfgs`` (one configuration, their seeds aside) as one grouped model on
    ``corpus``; returns one ``LMRun`` per config, each what ``language_model.train_lm`` gives for
    it to float tolerance. The runs' validation and test BPC are those of their own ``LSTMCore``,
    into which the group's weights are copied at each validation point (``evaluate_bpc``)."""
    if not cfgs:
        raise ValueError("a group needs at least one run")
    if len({group_key(c) for c in cfgs}) > 1:
        raise ValueError(f"the runs of a group may differ only in {PER_RUN}")
    for c in cfgs:
        c.validate()
    cfg, r = cfgs[0], len(cfgs)
    device = torch.device(device or "cpu")
    v = corpus.n_vocab
    core, interface, optimizer, aux_optimizer, singles = build_lm_group(cfgs, v, device)
    streams = batchify(corpus.train, cfg.batch_size).to(device)  # (L, B)
    if cfg.eval_streams * 2 > min(corpus.valid.numel(), corpus.test.numel()):
        raise ValueError(f"eval_streams={cfg.eval_streams} is too many for a validation text of {corpus.valid.numel()} "
                         f"characters")
    segment, aux_weight = cfg.segment_steps, (cfg.aux_weight if cfg.method == "dni_aux" else 0.0)
    runs = [LMRun(config=c) for c in cfgs]
    best_states: list[dict | None] = [None] * r
    core.train()
    interface.train()
    pos, state, seen, next_eval, counted, clock = 0, None, 0, cfg.eval_every, 0, 0.0
    pending: list[tuple[torch.Tensor, int]] = []  # each segment's chunk losses (chunks, R), with the characters before it
    bar = tqdm(total=cfg.train_chars, desc=desc or f"{cfg.method} x{r}", disable=not progress, mininterval=5,
               leave=False, unit="char", unit_scale=True)
    span = timer(device)
    while seen < cfg.train_chars:
        if pos >= streams.shape[0] - 1:  # a new epoch: the streams start again from a zero state
            pos, state = 0, None
            interface.discard()
        steps = min(segment, streams.shape[0] - 1 - pos)
        last = pos + steps >= streams.shape[0] - 1
        one = char_episode(streams, pos, steps, v)
        episode = Episode(one.x.unsqueeze(2).expand(-1, -1, r, -1), one.y, one.mask)  # x (t, B, R, V), shared
        stats = run_group_episode(core, episode, [steps] * r, cfg.truncation, interface, optimizer, aux_optimizer,
                                  aux_weight, loss_fn=char_losses, state=state, open_end=not last)
        pending.append((stats.losses, seen))
        state = None if last else stats.state
        pos += steps
        seen += steps * cfg.batch_size
        counted += steps * cfg.batch_size
        bar.update(steps * cfg.batch_size)
        if seen >= next_eval or seen >= cfg.train_chars:
            clock += timer(device) - span
            values = torch.cat([l.T for l, _ in pending], 1).tolist()  # (R, chunks of every segment): one read
            for k, run in enumerate(runs):
                nats, i = 0.0, 0
                for l, before in pending:
                    n = l.shape[0]
                    loss = summarize_episode(values[k][i : i + n], (n, 0, 0), cfg.batch_size)[0]  # per stream
                    i += n
                    if not math.isfinite(loss):
                        raise DivergenceError(
                            f"method={cfg.method!r}, T={cfg.truncation}, seed={run.config.seed}: the training loss "
                            f"became {loss} after {before} characters; try a smaller lr (now {cfg.lr}) or grad_scale "
                            f"(now {cfg.grad_scale})"
                        )
                    nats += loss * cfg.batch_size
                core.copy_to(k, singles[k])
                valid = evaluate_bpc(singles[k], corpus.valid, v, cfg.eval_streams)
                run.history.append({"chars": seen, "train_bpc": bits_per_character(nats, counted), "valid_bpc": valid})
                run.seconds.append(clock)
                if not valid >= run.best_valid_bpc:  # the first point, or better
                    run.best_valid_bpc, run.best_chars = valid, seen
                    best_states[k] = copy.deepcopy(singles[k].state_dict())
            pending, counted, next_eval = [], 0, next_eval + cfg.eval_every
            span = timer(device)
    bar.close()
    for k, run in enumerate(runs):
        singles[k].load_state_dict(best_states[k])
        run.test_bpc = evaluate_bpc(singles[k], corpus.test, v, cfg.eval_streams)
    return runs


__all__ = [
    "build_lm_group", "char_losses", "train_lm_group", "GroupedCopyTrainer", "GroupedLSTMCore", "GroupedStateSynthesizer", "check_group", "group_key", "groups",
    "run_group_episode", "stack_episodes", "train_copy_group",
]
