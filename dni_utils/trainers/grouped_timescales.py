"""Grouped two-timescale runs: R runs of notebook 07's system (``trainers.timescales``) that differ
only in their seed train as ONE system.

The two-timescale counterpart of ``trainers.grouped_recurrent`` (read ``trainers.grouped`` first).
Every parameter of the group carries the runs in its first dimension and every activation in its
second, as there: a tick's digits are ``(B, R, *image)`` (each run's own streams), A's state and
B's state are ``(B, R, 2H)``, a message is ``(B, R, M)`` and B reads the window's messages
concatenated, ``(B, R, T·M)``. So the ``BackwardInterface`` with ``runs=R`` and ``GroupedAdam``
serve the edge A -> B unchanged:

- ``GroupedLSTMCell``: R ``nn.LSTMCell`` as one. Each run's two weight matrices are one parameter,
  ``W = [W_ih; W_hh]`` ``(R, in + H, 4H)`` (Adam is element-wise: one tensor or two is the same
  update), so a tick is one ``baddbmm``, ``gates = b_ih + b_hh + [x, h] W``, then the gate maths
  of ``nn.LSTMCell`` (gate order i, f, g, o): ``c' = σ(f)·c + σ(i)·tanh(g)``, ``h' = σ(o)·tanh(c')``;
- ``GroupedNetworkA`` (encoder Linear + ReLU, the cell, A's own head and its message read-out) and
  ``GroupedNetworkB`` (the cell, the head), from ``grouped.group_layers`` and ``GroupedLinear``;
- the synthesizer is ``grouped.group_synthesizers`` of the runs' ``MLPSynthesizer``: with cDNI's
  context (``timescales.synthesizer_context``), the one-hot digit ``(B, R, 10)``, with ``cdni_own``'s
  the one-hot own-task label ``(B, R, 2)``, with ``dni_state``'s, A's hidden state ``(B, R, H)``;
- A's own loss at each tick, B's loss and the synthesizer's losses are computed per run, ``(R,)``,
  and their SUM is back-propagated, so each run's parameters receive exactly their own gradient.

Every method of ``TIMESCALE_METHODS`` groups: ``bptt``, ``dni``, ``dni_state``, ``cdni``, ``cdni_own`` and
``none``. Each run's modules are built by ``timescales.build_system`` from its seed and copied in,
each run draws its windows from its own ``DigitStream(seed=seed + 1)`` and carries its own states;
the test stream is the one every run shares. So a grouped run equals the ungrouped
``train_timescales`` run of the same seed to float tolerance (``tests/test_grouped_timescales.py``,
in float64). Evaluations copy the group's weights back into each run's own ``TimescaleSystem`` and
call ``timescales.evaluate``. Not kept: checkpoints of an unfinished group (a group that is
interrupted starts again; its finished runs are checkpointed one by one).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.trainers.grouped import GroupedAdam, GroupedLinear, group_layers, group_synthesizers
from dni_utils.trainers.grouped_recurrent import PER_RUN, group_key
from dni_utils.trainers.recurrent import DivergenceError
from dni_utils.trainers.timescales import (
    SYNTHETIC, DigitStream, NetworkA, NetworkB, TimescaleConfig, TimescaleData, TimescaleRun, TimescaleSystem,
    build_system, evaluate, own_labels, summarize_window, synthesizer_context, test_stream, window_labels,
)


class GroupedLSTMCell(nn.Module):
    """R ``nn.LSTMCell`` as one: x ``(B, R, in)``, h and c ``(B, R, H)`` -> h', c' ``(B, R, H)``."""

    def __init__(self, cells: list[nn.LSTMCell]) -> None:
        super().__init__()
        self.runs, self.inputs, self.hidden = len(cells), cells[0].input_size, cells[0].hidden_size
        self.weight = nn.Parameter(torch.stack(
            [torch.cat([c.weight_ih.detach(), c.weight_hh.detach()], dim=1).t() for c in cells]).contiguous())  # (R, in + H, 4H)
        self.b_ih = nn.Parameter(torch.stack([c.bias_ih.detach() for c in cells]).unsqueeze(1).contiguous())  # (R, 1, 4H)
        self.b_hh = nn.Parameter(torch.stack([c.bias_hh.detach() for c in cells]).unsqueeze(1).contiguous())

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xh = torch.cat([x, h], dim=2).transpose(0, 1)  # (R, B, in + H)
        gates = torch.baddbmm(self.b_ih + self.b_hh, xh, self.weight)  # b_ih + b_hh + [x, h] W: (R, B, 4H)
        i, f, g, o = gates.chunk(4, dim=2)
        c = torch.sigmoid(f) * c.transpose(0, 1) + torch.sigmoid(i) * torch.tanh(g)  # c' = σ(f)·c + σ(i)·tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)  # h' = σ(o)·tanh(c')
        return h.transpose(0, 1), c.transpose(0, 1)

    @torch.no_grad()
    def copy_to(self, r: int, cell: nn.LSTMCell) -> None:
        """Run r's weights into the ungrouped ``cell``."""
        cell.weight_ih.copy_(self.weight[r, : self.inputs].t())
        cell.weight_hh.copy_(self.weight[r, self.inputs :].t())
        cell.bias_ih.copy_(self.b_ih[r, 0])
        cell.bias_hh.copy_(self.b_hh[r, 0])


class GroupedNetworkA(nn.Module):
    """R ``NetworkA`` as one: x ``(B, R, *image)``, s ``(B, R, 2H)`` -> own logits ``(B, R, 2)``,
    message ``(B, R, M)``, s' ``(B, R, 2H)``."""

    def __init__(self, nets: list[NetworkA]) -> None:
        super().__init__()
        self.runs, self.hidden = len(nets), nets[0].hidden
        self.encoder = group_layers([n.encoder for n in nets])  # run-wise Flatten, GroupedLinear, ReLU
        self.cell = GroupedLSTMCell([n.cell for n in nets])
        self.own = GroupedLinear([n.own for n in nets])
        self.message = GroupedLinear([n.message for n in nets])

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.own.weight.new_zeros(batch_size, self.runs, 2 * self.hidden)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, c = self.cell(self.encoder(x), s[..., : self.hidden], s[..., self.hidden :])
        return self.own(h), torch.tanh(self.message(h)), torch.cat([h, c], dim=2)

    @torch.no_grad()
    def copy_to(self, r: int, net: NetworkA) -> None:
        self.encoder.copy_to(r, net.encoder)
        self.cell.copy_to(r, net.cell)
        self.own.copy_to(r, net.own)
        self.message.copy_to(r, net.message)


class GroupedNetworkB(nn.Module):
    """R ``NetworkB`` as one: messages ``(B, R, T·M)``, s ``(B, R, 2H)`` -> logits ``(B, R, T + 1)``, s'."""

    def __init__(self, nets: list[NetworkB]) -> None:
        super().__init__()
        self.runs, self.hidden = len(nets), nets[0].hidden
        self.cell = GroupedLSTMCell([n.cell for n in nets])
        self.head = GroupedLinear([n.head for n in nets])

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.head.weight.new_zeros(batch_size, self.runs, 2 * self.hidden)

    def forward(self, messages: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = self.cell(messages, s[..., : self.hidden], s[..., self.hidden :])
        return self.head(h), torch.cat([h, c], dim=2)

    @torch.no_grad()
    def copy_to(self, r: int, net: NetworkB) -> None:
        self.cell.copy_to(r, net.cell)
        self.head.copy_to(r, net.head)


def run_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each run's cross-entropy summed over its streams, (R,): logits (B, R, K), labels (B, R)."""
    return F.cross_entropy(logits.permute(0, 2, 1), labels, reduction="none").sum(0)


def check_group(cfgs: list[TimescaleConfig]) -> None:
    if not cfgs:
        raise ValueError("cfgs=[] is invalid: a group needs at least one run")
    for c in cfgs:
        if not isinstance(c, TimescaleConfig):
            raise ValueError(f"cfgs holds a {type(c).__name__}: expected TimescaleConfig")
        c.validate()
    if len({group_key(c) for c in cfgs}) > 1:
        first = asdict(cfgs[0])
        differ = sorted({k for c in cfgs[1:] for k, v in asdict(c).items() if v != first[k]} - set(PER_RUN))
        raise ValueError(f"the runs of a group may differ only in {PER_RUN}: these differ in {differ}")


class GroupedTimescaleSystem:
    """R ``TimescaleSystem`` of one configuration (seeds aside) as one system (see the module)."""

    def __init__(self, cfgs: list[TimescaleConfig], in_features: int, device: torch.device | str = "cpu") -> None:
        check_group(cfgs)
        self.cfg, self.runs, self.device = cfgs[0], len(cfgs), torch.device(device)
        cfg, r = self.cfg, self.runs
        self.members = [build_system(c, in_features) for c in cfgs]  # each run's, from its seed, on the CPU
        self.method = cfg.method
        self.a = GroupedNetworkA([m.a for m in self.members]).to(self.device)
        self.b = GroupedNetworkB([m.b for m in self.members]).to(self.device)
        self.interface = BackwardInterface(
            group_synthesizers([m.interface.synthesizer for m in self.members]), lr=cfg.synth_lr,
            scale=cfg.grad_scale, mode=self.members[0].interface.mode,
            optimizer=lambda params: GroupedAdam(params, r, lr=cfg.synth_lr), runs=r,
        ).to(self.device)
        self.opt_a = GroupedAdam(self.a.parameters(), r, lr=cfg.lr)
        self.opt_b = GroupedAdam(self.b.parameters(), r, lr=cfg.lr)
        for m in self.members:  # for evaluation (their optimisers never step)
            for module in (m.a, m.b, m.interface):
                module.to(self.device)
        self.state_a: torch.Tensor | None = None  # (B, R, 2H_A), carried along the stream
        self.state_b: torch.Tensor | None = None

    def train(self) -> None:
        for m in (self.a, self.b, self.interface):
            m.train()

    @torch.no_grad()
    def copy_to(self, r: int, system: TimescaleSystem) -> None:
        """Run r's weights into its own ungrouped ``system`` (its optimisers' state is not copied)."""
        self.a.copy_to(r, system.a)
        self.b.copy_to(r, system.b)
        self.interface.synthesizer.copy_to(r, system.interface.synthesizer)

    def window(self, x: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
        """``timescales.train_window`` for every run: x (T, B, R, *image), digits (T, B, R). Returns
        ``(R, n)`` on the device: row r is run r's ``WindowStats.scalars()`` (A's T tick losses, B's
        loss, then, for the synthetic-gradient methods, the T synthesizer losses and the mean cosine)."""
        a, b, interface, method = self.a, self.b, self.interface, self.method
        period, batch, _ = digits.shape
        s_a = a.initial_state(batch) if self.state_a is None else self.state_a.detach()
        s_b = b.initial_state(batch) if self.state_b is None else self.state_b.detach()
        own_y = own_labels(digits)  # (T, B, R)
        messages, contexts, own_losses, total = [], [], [], 0.0
        for t in range(period):
            own, m, s_a = a(x[t], s_a)  # (B, R, 2), (B, R, M), (B, R, 2H)
            loss_t = run_cross_entropy(own, own_y[t])  # (R,)
            own_losses.append(loss_t.detach())
            if method == "bptt":  # A waits: its graph grows over the window
                total = total + loss_t.sum()
                messages.append(m)
                continue
            context = synthesizer_context(method, digits[t], own_y[t], lambda: s_a[..., : a.hidden])  # (B, R, *)
            contexts.append(context)
            (loss_t.sum() + interface.inject(m, context)).backward()  # ∂/∂m_t = scale · δ̂_t, run by run
            self.opt_a.step()
            self.opt_a.zero_grad(set_to_none=True)
            messages.append(m.detach().requires_grad_())  # B reads the message, cut from A's graph
            s_a = s_a.detach()
        logits, s_b = b(torch.cat(messages, dim=2), s_b)  # B ticks: (B, R, T + 1)
        b_loss = run_cross_entropy(logits, window_labels(digits))  # (R,)
        (total + b_loss.sum()).backward()  # BPTT: one backward pass through B and A's whole window
        self.opt_b.step()
        self.opt_b.zero_grad(set_to_none=True)
        if method == "bptt":
            self.opt_a.step()
            self.opt_a.zero_grad(set_to_none=True)
        parts = [torch.stack(own_losses, 1), b_loss.unsqueeze(1)]  # (R, T), (R, 1)
        if method in SYNTHETIC:  # each message's true gradient trains the prediction made for it
            targets = [m.grad.detach() for m in messages]
            with torch.no_grad():  # the synthesizer has not stepped since the window began: the injected δ̂_t
                cos = [F.cosine_similarity(interface.synthetic_gradient(m, c), g, dim=2).mean(0)  # (R,)
                       for m, c, g in zip(messages, contexts, targets)]
            synth = torch.stack([interface.update(g) for g in targets], 1)  # (R, T)
            parts += [synth, torch.stack(cos, 1).mean(1, keepdim=True)]
        self.state_a, self.state_b = s_a.detach(), s_b.detach()
        return torch.cat(parts, 1)


def train_timescales_group(
    cfgs: list[TimescaleConfig], data: TimescaleData, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None,
) -> list[TimescaleRun]:
    """Train the runs ``cfgs`` (one configuration, their seeds aside) as one grouped system on
    ``data``; returns one ``TimescaleRun`` per config, each what ``timescales.train_timescales``
    gives for it to float tolerance. The training losses of every run stay on the device until the
    next evaluation and are read there in one host read, as ``train_timescales`` reads one run's
    (then each run's ``evaluate`` reads its two accuracies, as there); raises ``DivergenceError``
    there if one of a run's losses became non-finite, naming its seed and window."""
    cfgs = list(cfgs)
    check_group(cfgs)
    device = torch.device(device or "cpu")
    data = data.on(device)
    group = GroupedTimescaleSystem(cfgs, math.prod(data.x_train.shape[1:]), device)
    cfg, r = group.cfg, group.runs
    streams = [DigitStream(data.x_train, data.y_train, c.batch_size, seed=c.seed + 1) for c in cfgs]
    x_test, y_test = test_stream(data, cfg)
    runs = [TimescaleRun(config=c, timeline={"A": [], "B": [], "synthesizer": []}) for c in cfgs]
    counts = {"a_updates": 0, "b_updates": 0, "synth_updates": 0}
    a_steps = [cfg.period - 1] if cfg.method == "bptt" else list(range(cfg.period))  # ticks after which A steps
    synth = cfg.period if cfg.method in SYNTHETIC else 0  # synthesizer updates per window
    pending: list[tuple[torch.Tensor, int]] = []  # each window's (R, n) scalars, with the window
    group.train()
    windows = cfg.ticks // cfg.period
    bar = tqdm(range(1, windows + 1), desc=desc or f"{cfg.method} x{r}", disable=not progress, mininterval=5,
               leave=False)
    for w in bar:
        idx = torch.stack([s.draw(cfg.period) for s in streams], 2)  # (T, B, R): each run's own draw
        idx = idx.to(data.y_train.device, non_blocking=True)
        pending.append((group.window(data.x_train[idx], data.y_train[idx]), w))
        start = (w - 1) * cfg.period
        counts["a_updates"] += len(a_steps)
        counts["b_updates"] += 1
        counts["synth_updates"] += synth
        if w <= cfg.timeline_windows:
            for run in runs:
                run.timeline["A"] += [start + t for t in a_steps]
                run.timeline["B"].append(start + cfg.period - 1)
                if synth:
                    run.timeline["synthesizer"].append(start + cfg.period - 1)
        tick = w * cfg.period
        if tick % cfg.eval_every == 0 or w == windows:
            values = torch.stack([v for v, _ in pending]).tolist()  # (windows, R, n): the one read
            for k, (run, member) in enumerate(zip(runs, group.members)):
                acc = {"own_loss": [], "b_loss": [], "synth_loss": [], "synth_cos": []}
                for window_values, (_, window) in zip(values, pending):
                    numbers = summarize_window(window_values[k], cfg.period, cfg.batch_size)
                    if not (math.isfinite(numbers["own_loss"]) and math.isfinite(numbers["b_loss"])):
                        raise DivergenceError(
                            f"method={cfg.method!r}, T={cfg.period}, seed={run.config.seed}: a training loss became "
                            f"non-finite in window {window}; try a smaller lr (now {cfg.lr}) or synth_lr (now "
                            f"{cfg.synth_lr})"
                        )
                    for name in acc:
                        if math.isfinite(numbers[name]):
                            acc[name].append(numbers[name])
                group.copy_to(k, member)
                acc_a, acc_b = evaluate(member, x_test, y_test, cfg.period)
                run.history.append({"tick": tick, **counts, "acc_a": acc_a, "acc_b": acc_b,
                                    **{n: (sum(v) / len(v) if v else None) for n, v in acc.items()}})
            pending = []
            bar.set_postfix(acc_b=f"{runs[0].history[-1]['acc_b']:.3f}")
    for run in runs:
        run.final_a, run.final_b = run.history[-1]["acc_a"], run.history[-1]["acc_b"]
    return runs


__all__ = [
    "GroupedLSTMCell", "GroupedNetworkA", "GroupedNetworkB", "GroupedTimescaleSystem", "check_group",
    "run_cross_entropy", "train_timescales_group",
]
