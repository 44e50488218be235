"""Grouped feed-forward runs: R runs that differ only in their seed train as ONE model.

Why: a small network's step is bound by the host (Python, kernel launches), not by arithmetic, so
R runs one after another cost R x that overhead, while R runs stacked into one model cost about
one. Every parameter of the group carries the runs in its first dimension and every activation
carries them in its second, so autograd, the ``BackwardInterface`` and Adam work on the group as
on one network:

- activations of a fully connected layer are ``(B, R, F)``, maps of a conv layer ``(B, R*C, H, W)``
  (run-major channels: run r owns channels ``r*C .. r*C+C-1``); the network input is
  ``(B, R, *in_shape)``, each run's own batch;
- ``GroupedLinear``: ``W (R, in, out)``, one ``baddbmm``; a conv layer is one ``Conv2d`` with
  ``groups=R``; BatchNorm is one BatchNorm over ``R*F`` features or ``R*C`` channels, which is
  exactly a BatchNorm per run (statistics over each run's own batch);
- the task loss and every synthesizer loss are computed per run, ``(R,)``, and their SUM is
  back-propagated, so each run's parameters receive exactly their own gradient;
- ``GroupedAdam`` is Adam applied element-wise with a step count per run, and a run that is not
  available at a step (``p_update < 1``) neither moves nor advances its moments or step count.

Each run keeps its own initial weights (built by the ordinary ``FFTrainer`` from its seed and
copied in), its own batch order, diagnostic batch and availability draws, so a grouped run
equals the ungrouped run of the same seed to float tolerance (not bit for bit: the matrix
products sum in another order; ``tests/test_grouped.py``). Evaluations and gradient diagnostics
at log points copy the group's weights back into each run's ``FFTrainer`` and call its own code.

Not groupable (they train one by one): the oracle ``synth_target="true"`` (notebook 09's upper
bound), and ``p_update < 1`` together with ``synth_steps > 1`` (an unavailable synthesizer would
still run its extra forward passes, moving its BatchNorm statistics).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch.optim.adam import adam as functional_adam
from torch import nn
from tqdm import tqdm

from dni_utils.data.images import BatchSampler, Dataset
from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.mechanism.synthesizers import ConvSynthesizer, MLPSynthesizer
from dni_utils.trainers.feedforward import FFConfig, FFRun, FFTrainer, diagnostic_batch, log_row

# ---------------------------------------------------------------------------------------------
# Grouped layers: each built from the R per-run layers it replaces, and able to copy run r back.


class GroupedLinear(nn.Module):
    """R ``nn.Linear`` layers as one: ``(B, R, in) -> (B, R, out)``, ``y_r = x_r W_rᵀ + b_r``."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach().t() for l in layers]).contiguous())  # (R, in, out)
        self.bias = nn.Parameter(torch.stack([l.bias.detach() for l in layers]).contiguous())  # (R, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), self.weight)  # (R, B, out)
        return out.transpose(0, 1)  # (B, R, out)

    @torch.no_grad()
    def copy_to(self, r: int, layer: nn.Linear) -> None:
        layer.weight.copy_(self.weight[r].t())
        layer.bias.copy_(self.bias[r])


class GroupedConv2d(nn.Module):
    """R ``nn.Conv2d`` layers as one grouped convolution: ``(B, R*Cin, H, W) -> (B, R*Cout, H', W')``
    (a ``(B, R, Cin, H, W)`` input is taken as its run-major channels)."""

    def __init__(self, layers: list[nn.Conv2d]) -> None:
        super().__init__()
        first, runs = layers[0], len(layers)
        self.runs = runs
        self.conv = nn.Conv2d(
            runs * first.in_channels, runs * first.out_channels, first.kernel_size, first.stride, first.padding,
            first.dilation, groups=runs * first.groups, bias=first.bias is not None,
        )
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([l.weight for l in layers]))
            if first.bias is not None:
                self.conv.bias.copy_(torch.cat([l.bias for l in layers]))
        self.conv.to(first.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # (B, R, C, H, W): the network input
            x = x.reshape(x.shape[0], -1, *x.shape[3:])
        return self.conv(x)

    @torch.no_grad()
    def copy_to(self, r: int, layer: nn.Conv2d) -> None:
        n = layer.out_channels
        layer.weight.copy_(self.conv.weight[r * n : (r + 1) * n])
        if layer.bias is not None:
            layer.bias.copy_(self.conv.bias[r * n : (r + 1) * n])


class GroupedBatchNorm(nn.Module):
    """R BatchNorms (1d over ``(B, R, F)`` or 2d over ``(B, R*C, H, W)``) as one over R*F features
    or R*C channels: the statistics of each run come from its own batch only."""

    def __init__(self, layers: list[nn.modules.batchnorm._BatchNorm]) -> None:
        super().__init__()
        first = layers[0]
        self.vector = isinstance(first, nn.BatchNorm1d)
        cls = nn.BatchNorm1d if self.vector else nn.BatchNorm2d
        self.bn = cls(len(layers) * first.num_features, first.eps, first.momentum, first.affine,
                      first.track_running_stats).to(first.weight.device)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(self.bn, name).copy_(torch.cat([getattr(l, name) for l in layers]))
            self.bn.num_batches_tracked.copy_(first.num_batches_tracked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vector:  # (B, R, F) -> (B, R*F) -> (B, R, F)
            return self.bn(x.reshape(x.shape[0], -1)).view(x.shape)
        return self.bn(x)

    @torch.no_grad()
    def copy_to(self, r: int, layer: nn.modules.batchnorm._BatchNorm) -> None:
        n = layer.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(layer, name).copy_(getattr(self.bn, name)[r * n : (r + 1) * n])
        layer.num_batches_tracked.copy_(self.bn.num_batches_tracked)


class RunFlatten(nn.Module):
    """``nn.Flatten`` per run: ``(B, R, C, H, W)`` or ``(B, R*C, H, W)`` -> ``(B, R, C*H*W)``."""

    def __init__(self, runs: int) -> None:
        super().__init__()
        self.runs = runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.runs, -1)

    def copy_to(self, r: int, layer: nn.Module) -> None:
        pass


class Shared(nn.Module):
    """A module without parameters or state (ReLU, pooling), applied to the group as it is."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = copy.deepcopy(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def copy_to(self, r: int, layer: nn.Module) -> None:
        pass


class GroupedSequential(nn.Sequential):
    @torch.no_grad()
    def copy_to(self, r: int, layer: nn.Sequential) -> None:
        for mine, theirs in zip(self, layer, strict=True):
            mine.copy_to(r, theirs)


_SHARED = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity)


def group_layers(layers: list[nn.Module]) -> nn.Module:
    """The grouped version of R layers of the same structure (the layers of ``models`` and
    ``synthesizers``). Raises ``TypeError`` for a layer it cannot group."""
    first = layers[0]
    if any(type(l) is not type(first) for l in layers):
        raise TypeError("the runs' layers differ in type")
    if isinstance(first, nn.Sequential):
        return GroupedSequential(*[group_layers([l[i] for l in layers]) for i in range(len(first))])
    if isinstance(first, nn.Linear):
        return GroupedLinear(layers)
    if isinstance(first, nn.Conv2d):
        return GroupedConv2d(layers)
    if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return GroupedBatchNorm(layers)
    if isinstance(first, nn.Flatten):
        return RunFlatten(len(layers))
    if isinstance(first, _SHARED):
        return Shared(first)
    raise TypeError(f"cannot group a {type(first).__name__}")


class _GroupedSynthesizer(nn.Module):
    """What the grouped synthesizers share: the runs, their hidden layers and output layer, grouped."""

    def __init__(self, synths: list[MLPSynthesizer] | list[ConvSynthesizer]) -> None:
        super().__init__()
        self.runs, self.context_features = len(synths), synths[0].context_features
        self.hidden = group_layers([s.hidden for s in synths])
        self.out = group_layers([s.out for s in synths])

    @torch.no_grad()
    def copy_to(self, r: int, synth: MLPSynthesizer | ConvSynthesizer) -> None:
        self.hidden.copy_to(r, synth.hidden)
        self.out.copy_to(r, synth.out)


class GroupedMLPSynthesizer(_GroupedSynthesizer):
    """R ``MLPSynthesizer`` as one: trigger ``(B, R, F)`` or ``(B, R*C, H, W)``, context ``(B, R, C)``;
    the prediction has the trigger's shape."""

    def forward(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = trigger.reshape(trigger.shape[0], self.runs, -1)  # (B, R, D)
        if self.context_features:
            x = torch.cat([x, context.to(x.dtype)], dim=2)  # (B, R, D + C)
        return self.out(self.hidden(x)).reshape(trigger.shape)


class GroupedConvSynthesizer(_GroupedSynthesizer):
    """R ``ConvSynthesizer`` as one: trigger ``(B, R*C, H, W)``, context ``(B, R, C_ctx)`` tiled over
    the map as each run's extra input channels (after its own C)."""

    def forward(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = trigger
        if self.context_features:
            b, _, h, w = x.shape
            per_run = x.view(b, self.runs, -1, h, w)  # (B, R, C, H, W)
            tiled = context.to(x.dtype).view(b, self.runs, -1, 1, 1).expand(b, self.runs, context.shape[2], h, w)
            x = torch.cat([per_run, tiled], dim=2).reshape(b, -1, h, w)  # (B, R*(C + C_ctx), H, W)
        return self.out(self.hidden(x))


def group_synthesizers(synths: list[nn.Module]) -> nn.Module:
    if isinstance(synths[0], MLPSynthesizer):
        return GroupedMLPSynthesizer(synths)
    if isinstance(synths[0], ConvSynthesizer):
        return GroupedConvSynthesizer(synths)
    raise TypeError(f"cannot group a {type(synths[0]).__name__}")


# ---------------------------------------------------------------------------------------------
# Adam with a step count per run and a mask of the runs that step.


class GroupedAdam(torch.optim.Optimizer):
    """Adam (no weight decay, no amsgrad) over grouped parameters whose first dimension, viewed as
    ``(R, -1)``, is the run. Element-wise the same update as ``torch.optim.Adam``:

        m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²,   θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)

    with ``t`` counted per run. ``step(mask)`` (or the ``mask`` attribute, for a caller that
    cannot pass it, like ``BackwardInterface.update``): a ``(R,)`` bool tensor of the runs that
    step; the others keep their parameters, moments and step count. None: every run steps.

    While every run has stepped every time (``p_update = 1``) the step counts are one number and
    the update is torch's own functional Adam over all the group's tensors at once (its foreach
    kernels on CUDA): the same arithmetic as the ungrouped runs' optimisers, in a few launches.
    From the first step that leaves a run out, each tensor is updated with per-run counts.
    """

    def __init__(self, params, runs: int, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self.runs = runs
        self.mask: torch.Tensor | None = None
        self.uniform = True  # every run has stepped at every step so far

    @torch.no_grad()
    def step(self, mask: torch.Tensor | None = None, closure=None):  # noqa: D102 (see the class)
        mask = self.mask if mask is None else mask
        if mask is not None:
            self.uniform = False
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if self.uniform:
                states = [self.state[p] for p in params]
                functional_adam(
                    params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                    [], [s["step"] for s in states], amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1],
                    lr=group["lr"], weight_decay=0.0, eps=group["eps"], maximize=False,
                )
            else:
                for p in params:
                    self._masked(p, group, mask)
        return None

    def _masked(self, p: torch.Tensor, group: dict, mask: torch.Tensor | None) -> None:
        r, (beta1, beta2) = self.runs, group["betas"]
        state = self.state[p]
        if "run_steps" not in state:  # from here on, a step count per run
            state["run_steps"] = torch.full((r, 1), float(state["step"]), dtype=torch.float64, device=p.device)
        g, x = p.grad.reshape(r, -1), p.view(r, -1)
        m_old, v_old = state["exp_avg"].view(r, -1), state["exp_avg_sq"].view(r, -1)
        on = None if mask is None else mask.view(r, 1)
        step = state["run_steps"] + (1.0 if on is None else on.to(torch.float64))
        m = m_old.lerp(g, 1 - beta1)
        v = v_old * beta2 + (1 - beta2) * g * g
        safe = step.clamp(min=1.0)  # a run that never stepped: any finite value (masked below)
        step_size = (group["lr"] / (1 - beta1**safe)).to(p.dtype)  # (R, 1)
        bias2_sqrt = (1 - beta2**safe).sqrt().to(p.dtype)
        update = m / (v.sqrt() / bias2_sqrt + group["eps"]) * step_size
        if on is None:
            x.sub_(update)
            m_old.copy_(m)
            v_old.copy_(v)
        else:
            x.sub_(torch.where(on, update, torch.zeros_like(update)))
            m_old.copy_(torch.where(on, m, m_old))
            v_old.copy_(torch.where(on, v, v_old))
        state["run_steps"] = step


def _grouped_adam(runs: int, lr: float):
    return lambda params: GroupedAdam(params, runs, lr=lr)


# ---------------------------------------------------------------------------------------------
# The grouped trainer.

#: FFConfig fields that may differ between the runs of one group.
PER_RUN = ("seed",)


def group_key(cfg: FFConfig) -> str | None:
    """What runs must share to train as one group (None: this config trains alone)."""
    if cfg.synth_target != "bootstrap" or (cfg.p_update < 1 and cfg.synth_steps > 1):
        return None
    fields = asdict(cfg)
    for name in PER_RUN:
        fields.pop(name)
    return repr(sorted(fields.items()))


def check_group(cfgs: list[FFConfig]) -> None:
    if not cfgs:
        raise ValueError("a group needs at least one run")
    keys = {group_key(c) for c in cfgs}
    if None in keys:
        raise ValueError(f"these runs cannot be grouped (synth_target={cfgs[0].synth_target!r}, "
                         f"p_update={cfgs[0].p_update}, synth_steps={cfgs[0].synth_steps}): train them one by one")
    if len(keys) > 1:
        raise ValueError(f"the runs of a group may differ only in {PER_RUN}")


class GroupedFFTrainer:
    """R ``FFTrainer`` runs of one configuration (seeds aside) as one model (see the module)."""

    def __init__(self, cfgs: list[FFConfig], in_shape: tuple[int, ...], n_classes: int,
                 device: torch.device | str = "cpu") -> None:
        check_group(cfgs)
        self.cfg, self.runs = cfgs[0], len(cfgs)
        self.device, self.n_classes = torch.device(device), n_classes
        # Each run's own trainer, built from its seed: the initial weights and, at log points, the
        # evaluation and the diagnostics. Its optimisers are never stepped.
        self.members = [FFTrainer(c, in_shape, n_classes, device) for c in cfgs]
        nets = [m.net for m in self.members]
        self.blocks = nn.ModuleList(group_layers([n.blocks[i] for n in nets]) for i in range(self.cfg.depth))
        self.head = group_layers([n.head for n in nets])
        cfg, r = self.cfg, self.runs
        self.block_opts = [GroupedAdam(b.parameters(), r, lr=cfg.lr) for b in self.blocks]
        self.head_opt = GroupedAdam(self.head.parameters(), r, lr=cfg.lr)
        self.interfaces = nn.ModuleList()
        if cfg.method in ("dni", "cdni"):
            for i in range(cfg.depth):
                first = self.members[0].interfaces[i]
                synth = group_synthesizers([m.interfaces[i].synthesizer for m in self.members])
                self.interfaces.append(BackwardInterface(
                    synth, lr=cfg.synth_lr or cfg.lr, scale=first.scale, steps=first.steps,
                    optimizer=_grouped_adam(r, cfg.synth_lr or cfg.lr), runs=r,
                ))
        self.updates = torch.zeros(r, cfg.depth, dtype=torch.long)
        self.head_updates = torch.zeros(r, dtype=torch.long)
        self.synth_updates = torch.zeros(r, cfg.depth, dtype=torch.long)
        self.synth_last = torch.full((cfg.depth, r), float("nan"), device=self.device)  # NaN until the first update
        stepping = self.block_opts if cfg.method != "nobprop" else []
        opts = stepping + [self.head_opt] + [i.optimizer for i in self.interfaces]
        milestones = sorted({max(1, round(m * cfg.steps)) for m in cfg.lr_milestones})
        self.schedulers = [torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=cfg.lr_gamma) for o in opts]

    # -- one step -----------------------------------------------------------------------------

    def available(self) -> torch.Tensor:
        """(R, depth + 1) bool on the host: each run's own draw (``FFTrainer.available``)."""
        return torch.tensor([m.available() for m in self.members], dtype=torch.bool)

    def task_losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(R,) cross-entropy summed over each run's batch; logits (B, R, classes), y (B, R)."""
        return F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none").sum(0)

    def context(self, y: torch.Tensor) -> torch.Tensor | None:
        return F.one_hot(y, self.n_classes).float() if self.cfg.method == "cdni" else None  # (B, R, C)

    def train(self) -> None:
        self.blocks.train()
        self.head.train()
        self.interfaces.train()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step of every run: x (B, R, *in_shape), y (B, R); returns the (R,) task losses."""
        avail = self.available()
        loss = self._step_bprop(x, y, avail) if self.cfg.method == "bprop" else self._step_decoupled(x, y, avail)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            for s in self.schedulers:
                s.step()
        return loss

    def _mask(self, column: torch.Tensor) -> torch.Tensor | None:
        return None if bool(column.all()) else column.to(self.device)

    def _step_bprop(self, x: torch.Tensor, y: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        if self.cfg.bprop_async == "chain":  # layer i updates only if it and every layer above are available
            avail = avail.to(torch.uint8).flip(1).cummin(1).values.flip(1).bool()
        h = x
        for block in self.blocks:
            h = block(h)
        loss = self.task_losses(self.head(h), y)
        for o in [*self.block_opts, self.head_opt]:
            o.zero_grad(set_to_none=True)
        if bool(avail.any()):
            loss.sum().backward()
            for i, o in enumerate([*self.block_opts, self.head_opt]):
                if bool(avail[:, i].any()):
                    o.step(self._mask(avail[:, i]))
        self.updates += avail[:, :-1]
        self.head_updates += avail[:, -1]
        return loss.detach()

    def _step_decoupled(self, x: torch.Tensor, y: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        ctx = self.context(y)
        learn = self.cfg.method != "nobprop"
        message = x
        for i, (block, opt) in enumerate(zip(self.blocks, self.block_opts)):
            h = block(message)
            if learn:
                nxt = self.interfaces[i].send(h, ctx)
                if bool(avail[:, i].any()):
                    opt.step(self._mask(avail[:, i]))
                    self.updates[:, i] += avail[:, i]
                opt.zero_grad(set_to_none=True)
                if i > 0:
                    self._update_synthesizer(i - 1, avail[:, i - 1])
            else:
                nxt = h.detach()  # No Bprop: the edge only cuts the graph
            message = nxt
        loss = self.task_losses(self.head(message), y)
        self.head_opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        if bool(avail[:, -1].any()):
            self.head_opt.step(self._mask(avail[:, -1]))
            self.head_updates += avail[:, -1]
        if learn:
            self._update_synthesizer(self.cfg.depth - 1, avail[:, -2])
        return loss.detach()

    def _update_synthesizer(self, i: int, avail: torch.Tensor) -> None:
        iface = self.interfaces[i]
        if not bool(avail.any()):
            iface.discard()
            return
        mask = iface.optimizer.mask = self._mask(avail)
        losses = iface.update()  # (R,)
        self.synth_last[i] = losses if mask is None else torch.where(mask, losses, self.synth_last[i])
        self.synth_updates[:, i] += avail

    # -- back to the runs -----------------------------------------------------------------------

    @torch.no_grad()
    def copy_to_members(self) -> None:
        """Each run's weights and statistics into its own ``FFTrainer`` (for evaluation)."""
        for r, member in enumerate(self.members):
            for grouped, block in zip(self.blocks, member.net.blocks):
                grouped.copy_to(r, block)
            self.head.copy_to(r, member.net.head)
            for grouped, iface in zip(self.interfaces, member.interfaces):
                grouped.synthesizer.copy_to(r, iface.synthesizer)


def stack_batches(samplers: list[BatchSampler]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each run's next batch, stacked: x (B, R, *shape), y (B, R)."""
    xs, ys = zip(*(s.next() for s in samplers))
    return torch.stack(xs, 1), torch.stack(ys, 1)


def train_ff_group(
    cfgs: list[FFConfig], data: Dataset, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None,
) -> list[FFRun]:
    """Train the runs ``cfgs`` (one configuration, their seeds aside) as one grouped model; returns
    one ``FFRun`` per config, each what ``feedforward.train_ff`` gives for it to float tolerance."""
    device = torch.device(device or "cpu")
    data = data.on(device)
    group = GroupedFFTrainer(list(cfgs), data.shape, data.n_classes, device)
    cfg, r = group.cfg, group.runs
    samplers = [BatchSampler(data.x_train, data.y_train, c.batch_size, seed=c.seed) for c in cfgs]
    diags = [diagnostic_batch(c, data) for c in cfgs]  # each run's, as train_ff draws it
    runs = [FFRun(config=c) for c in cfgs]
    group.train()
    losses: list[torch.Tensor] = []  # (R,) per step, read at log points
    synth: list[torch.Tensor] = []  # (depth, R) per step
    steps: list[int] = []
    bar = tqdm(range(1, cfg.steps + 1), desc=desc or f"{cfg.method} x{r}", disable=not progress, mininterval=5, leave=False)
    for step in bar:
        x, y = stack_batches(samplers)
        losses.append(group.step(x, y))
        if group.interfaces:
            synth.append(group.synth_last.clone())
        steps.append(step)
        if step % cfg.log_every == 0 or step == cfg.steps:
            values = (torch.stack(losses) / cfg.batch_size).T.tolist()  # (R, n)
            if synth:  # (R, depth, n)
                synth_values = torch.stack(synth).permute(2, 1, 0).tolist()
            else:  # No Bprop: its interfaces never learn (None, as train_ff logs); Bprop: none
                synth_values = [[[] for _ in group.members[0].interfaces] for _ in range(r)]
            group.copy_to_members()
            for k, (run, member) in enumerate(zip(runs, group.members)):
                run.history.append(log_row(member, step, values[k], steps, synth_values[k], data, diags[k],
                                           who=f", seed={run.config.seed}"))
            losses, synth, steps = [], [], []
    for k, run in enumerate(runs):
        run.test_error = run.history[-1]["test_error"]
        run.updates = group.updates[k].tolist()
        run.head_updates = int(group.head_updates[k])
        run.synth_updates = group.synth_updates[k].tolist() if group.interfaces else [0] * len(group.members[k].interfaces)
    return runs


def groups(cfgs: list[FFConfig]) -> list[list[int]]:
    """The indices of ``cfgs`` in groups that can train together, in order of first appearance; a
    config that cannot be grouped (``group_key`` None) is a group of one."""
    out: list[list[int]] = []
    by_key: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        key = group_key(cfg)
        if key is None:
            out.append([i])
        elif key in by_key:
            by_key[key].append(i)
        else:
            by_key[key] = [i]
            out.append(by_key[key])
    return out


__all__ = [
    "GroupedAdam", "GroupedFFTrainer", "GroupedLinear", "check_group", "group_key", "groups", "stack_batches",
    "train_ff_group",
]
