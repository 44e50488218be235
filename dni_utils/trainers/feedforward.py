"""Feed-forward training: Bprop, No Bprop, DNI and cDNI on a stack of blocks (paper section 4.1).

- ``bprop``: ordinary back-propagation through every block.
- ``nobprop``: only the output layer learns; the hidden blocks keep their random weights.
- ``dni``: an interface after every hidden block; each block updates as soon as its synthetic
  gradient arrives, each synthesizer regresses onto the next one's synthetic gradient
  back-propagated through the block between (bootstrapping); only the last sees the true loss.
- ``cdni``: as ``dni``, with the one-hot label as the synthesizers' context.

For a CNN the trigger is a (C, H, W) map and every synthesizer is convolutional (paper, CIFAR-10):
``conv_synth_hidden_layers`` x (Conv 5x5 of ``conv_synth_channels``, BatchNorm, ReLU) and a final
zero-initialised Conv 5x5 back to C channels. For cDNI the same synthesizer also reads the one-hot
label, tiled over the map as 10 extra input channels of its first convolution (our choice: the
paper does not say how the CNN's cDNI synthesizer takes the label).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dni_utils.data.images import BatchSampler, Dataset
from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.mechanism.models import ARCHS, FFNet, make_net
from dni_utils.mechanism.synthesizers import make_synthesizer
from dni_utils.tools.checkpoint import Checkpoint, Meter, batch_loop_state, first_non_finite, resume_batch_loop

METHODS = ("bprop", "nobprop", "dni", "cdni")
METHOD_LABELS = {"bprop": "Bprop", "nobprop": "No Bprop", "dni": "DNI", "cdni": "cDNI"}
#: How Bprop meets ``p_update < 1`` (see ``FFConfig.bprop_async``).
BPROP_ASYNC = ("chain", "independent")
#: What the synthesizers regress onto (see ``FFConfig.synth_target``).
SYNTH_TARGETS = ("bootstrap", "true")


class DivergenceError(FloatingPointError):
    """The training loss stopped being a finite number."""


@dataclass
class FFConfig:
    method: str = "dni"  # bprop | nobprop | dni | cdni
    arch: str = "fcn"  # fcn | cnn
    depth: int = 3  # hidden blocks (each followed by an interface); the output layer is extra
    width: int = 256  # units (fcn) or 5x5 filters (cnn) per hidden block
    strided_pools: int = 2  # cnn: blocks whose 3x3 pooling has stride 2 (the first ones); stride 1 after
    steps: int = 500_000  # training iterations
    batch_size: int = 256
    lr: float = 3e-5  # Adam, for the blocks, the output layer and the synthesizers
    lr_milestones: tuple[float, ...] = (0.6, 0.8)  # fractions of `steps` where lr is divided (paper: 300k, 400k)
    lr_gamma: float = 0.1
    synth_lr: float = 0.0  # Adam learning rate of the synthesizers (0 = the same as lr)
    synth_kind: str = "mlp"  # DNI synthesizer: linear | mlp | conv
    synth_hidden_layers: int = 2  # DNI synthesizer hidden layers (paper: 2)
    synth_hidden: int = 1024  # DNI synthesizer hidden width (paper: 1024)
    csynth_kind: str = "linear"  # cDNI synthesizer (paper: linear, label as context)
    csynth_hidden_layers: int = 0
    conv_synth_hidden_layers: int = 2  # cnn, DNI and cDNI: hidden 5x5 conv layers of the synthesizer (paper: 2)
    conv_synth_channels: int = 128  # cnn: channels of those hidden conv layers (paper: 128)
    # cnn: the synthesizer of the LAST interface, whose gradient comes from the Linear output layer
    # on the flattened map. conv: as the others (the paper). mlp: an MLP over the flattened map
    # (synth_hidden_layers x synth_hidden, the label as extra input for cDNI): that gradient is
    # W_outᵀ(p - y), position by position, which a translation-equivariant conv cannot model
    # (MNIST CNN at cpu: its cosine with the true gradient 0.07 with a conv, 0.44 with an MLP).
    conv_top_synth: str = "conv"
    grad_scale: float = 1.0  # factor on the injected synthetic gradient
    log_every: int = 1000  # steps between log points (the last step is always logged)
    diag_batch: int = 256  # examples for the synthetic-vs-true gradient cosine at log points
    seed: int = 0
    # Asynchronous updates (paper section 3.2): at every step each layer (a hidden block with the
    # synthesizer on its output, or the output layer) is available with probability p_update,
    # independently; 1.0 is synchronous training, bit for bit.
    p_update: float = 1.0
    # Bprop under p_update < 1. chain: a layer's gradient needs the backward pass through every
    # layer above it, so it updates only when it and all layers above it are available.
    # independent: each available layer applies its true gradient (the locking is ignored).
    bprop_async: str = "chain"
    # What each synthesizer regresses onto (diagnostics). bootstrap: the paper's method, the next
    # interface's synthetic gradient back-propagated through the block between (only the last
    # synthesizer sees the true loss gradient). true: an ORACLE, the true back-propagated gradient
    # dL/dh_i of this batch (one extra full backward pass per step); it separates "a synthesizer
    # cannot model the gradient" from "bootstrapped targets compound errors". Not DNI: never
    # used for a reported DNI result.
    synth_target: str = "bootstrap"
    synth_steps: int = 1  # synthesizer optimiser steps per target (the paper: 1)

    def validate(self) -> FFConfig:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is unknown: expected one of {METHODS}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch={self.arch!r} is unknown: expected one of {ARCHS}")
        for name in (
            "depth", "width", "steps", "batch_size", "synth_steps", "log_every", "diag_batch", "synth_hidden", "conv_synth_channels"
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
        if self.conv_top_synth not in ("conv", "mlp"):
            raise ValueError(f"conv_top_synth={self.conv_top_synth!r} is unknown: expected 'conv' or 'mlp'")
        for name in ("strided_pools", "conv_synth_hidden_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 0")
        if self.synth_lr < 0:
            raise ValueError(f"synth_lr={self.synth_lr!r} is invalid: expected a positive number, or 0 for lr")
        for name in ("lr", "lr_gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected a positive number")
        if not (isinstance(self.p_update, (int, float)) and 0 < self.p_update <= 1):
            raise ValueError(f"p_update={self.p_update!r} is invalid: expected a probability in (0, 1]")
        if self.bprop_async not in BPROP_ASYNC:
            raise ValueError(f"bprop_async={self.bprop_async!r} is unknown: expected one of {BPROP_ASYNC}")
        if self.synth_target not in SYNTH_TARGETS:
            raise ValueError(f"synth_target={self.synth_target!r} is unknown: expected one of {SYNTH_TARGETS}")
        if not all(0 < m < 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones={self.lr_milestones!r} is invalid: expected fractions in (0, 1)")
        return self

    def train_steps(self) -> int:
        """Training iterations of the run."""
        return self.steps

    def capped(self, n: int) -> FFConfig:
        """The same run cut to at most ``n`` steps (its log interval too): a dry run or a warm-up."""
        return dataclasses.replace(self, steps=min(self.steps, n), log_every=min(self.log_every, n))


@dataclass
class FFRun:
    """What one training run produced: the log and the final numbers."""

    config: FFConfig
    history: list[dict] = field(default_factory=list)  # one row per log point
    test_error: float = float("nan")  # final, on the whole test set
    updates: list[int] = field(default_factory=list)  # parameter updates each block received
    head_updates: int = 0  # parameter updates the output layer received
    synth_updates: list[int] = field(default_factory=list)  # regression steps of each synthesizer

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "history": self.history,
            "test_error": self.test_error,
            "updates": self.updates,
            "head_updates": self.head_updates,
            "synth_updates": self.synth_updates,
        }


def task_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy *summed* over the batch.

    Adam is invariant to the scale of the loss, so the blocks train exactly as with the mean;
    but summing makes the gradient at every activation a per-example quantity of order one,
    whatever the batch size, and that is what the synthesizers regress onto.
    """
    return F.cross_entropy(logits, y, reduction="sum")


def one_hot(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(y, n_classes).float()  # (B, C)


class FFTrainer:
    """Holds a network, its optimisers and (for DNI/cDNI) one interface per hidden block."""

    def __init__(
        self, cfg: FFConfig, in_shape: tuple[int, ...], n_classes: int, device: torch.device | str = "cpu"
    ) -> None:
        self.cfg = cfg.validate()
        self.n_classes = n_classes
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        # Built on the CPU from the seed, then moved: the same initial weights on every device.
        self.net: FFNet = make_net(cfg.arch, in_shape, cfg.depth, cfg.width, n_classes, cfg.strided_pools).to(device)
        if cfg.method == "bprop":
            self.block_opts = [torch.optim.Adam(self.net.parameters(), lr=cfg.lr)]
            self.head_opt = self.block_opts[0]
            self.interfaces = nn.ModuleList()
        else:
            self.block_opts = [torch.optim.Adam(b.parameters(), lr=cfg.lr) for b in self.net.blocks]
            self.head_opt = torch.optim.Adam(self.net.head.parameters(), lr=cfg.lr)
            last = len(self.net.shapes) - 1
            self.interfaces = nn.ModuleList(self._interface(shape, i == last) for i, shape in enumerate(self.net.shapes))
            self.interfaces.to(device)  # in place: the interfaces' optimisers keep their parameters
        self.updates = [0] * cfg.depth
        self.head_updates = 0
        # Who is available at a step: its own generator, drawn only when p_update < 1, so that
        # synchronous training consumes exactly the random numbers it did without this option.
        # On the host: the draw decides which optimisers step (Python control flow).
        self.availability = torch.Generator().manual_seed(cfg.seed + 2)
        stepping = self.block_opts if cfg.method != "nobprop" else []
        opts = {id(o): o for o in stepping + [self.head_opt]}
        opts.update({id(i.optimizer): i.optimizer for i in self.interfaces if i.optimizer is not None})
        milestones = sorted({max(1, round(m * cfg.steps)) for m in cfg.lr_milestones})
        self.schedulers = [
            torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=cfg.lr_gamma) for o in opts.values()
        ]

    def _interface(self, shape: tuple[int, ...], last: bool = False) -> BackwardInterface:
        cfg = self.cfg
        if cfg.method == "nobprop":  # the edge only cuts the graph: nothing reaches the block
            return BackwardInterface(nn.Identity(), lr=cfg.lr, mode="off")
        if len(shape) == 3:  # a conv map (C, H, W): label as extra channels (conv) or inputs (mlp) for cDNI
            context = self.n_classes if cfg.method == "cdni" else 0
            if last and cfg.conv_top_synth == "mlp":  # sees the whole map (see FFConfig)
                synth = make_synthesizer("mlp", shape, cfg.synth_hidden_layers, cfg.synth_hidden, context_features=context)
            else:
                synth = make_synthesizer(
                    "conv", shape, cfg.conv_synth_hidden_layers, cfg.conv_synth_channels, context_features=context
                )
        elif cfg.method == "cdni":
            synth = make_synthesizer(
                cfg.csynth_kind, shape, cfg.csynth_hidden_layers, cfg.synth_hidden, context_features=self.n_classes
            )
        else:
            synth = make_synthesizer(cfg.synth_kind, shape, cfg.synth_hidden_layers, cfg.synth_hidden)
        return BackwardInterface(synth, lr=cfg.synth_lr or cfg.lr, scale=cfg.grad_scale, steps=cfg.synth_steps)

    def context(self, y: torch.Tensor) -> torch.Tensor | None:
        return one_hot(y, self.n_classes) if self.cfg.method == "cdni" else None

    def train(self) -> None:
        self.net.train()
        self.interfaces.train()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training iteration on a batch; returns the task loss summed over the batch, as a
        0-d tensor on the device (reading it would wait for the device: see ``checkpoint.Meter``)."""
        loss = self._step_bprop(x, y) if self.cfg.method == "bprop" else self._step_decoupled(x, y)
        with warnings.catch_warnings():
            # With p_update < 1 a layer may not have stepped yet; its schedule follows the global step.
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            for s in self.schedulers:
                s.step()
        return loss

    def available(self) -> list[bool]:
        """Which layers are available this step: ``depth`` blocks, then the output layer.

        Each is available with probability ``p_update``, independently (all of them when it is 1).
        """
        if self.cfg.p_update >= 1:
            return [True] * (self.cfg.depth + 1)
        draw = torch.rand(self.cfg.depth + 1, generator=self.availability)
        return (draw < self.cfg.p_update).tolist()

    def _step_bprop(self, x: torch.Tensor, y: torch.Tensor) -> float:
        opt = self.block_opts[0]
        avail = self.available()
        if self.cfg.bprop_async == "chain":  # the gradient of layer i has to pass through i+1, ..., head
            avail = [all(avail[i:]) for i in range(len(avail))]
        loss = task_loss(self.net(x), y)
        opt.zero_grad(set_to_none=True)
        if any(avail):
            loss.backward()
            for layer, ok in zip([*self.net.blocks, self.net.head], avail):
                if not ok:  # Adam skips parameters without a gradient (their moments stay as they were)
                    for p in layer.parameters():
                        p.grad = None
            opt.step()
        self.updates = [u + ok for u, ok in zip(self.updates, avail)]
        self.head_updates += avail[-1]
        return loss.detach()

    def _step_decoupled(self, x: torch.Tensor, y: torch.Tensor) -> float:
        ctx = self.context(y)
        learn = self.cfg.method != "nobprop"
        avail = self.available()  # layer i = block i with M_i; an unavailable one changes nothing
        oracle = self._true_gradients(x, y) if learn and self.cfg.synth_target == "true" else None
        message = x
        for i, (block, iface, opt) in enumerate(zip(self.net.blocks, self.interfaces, self.block_opts)):
            h = block(message)  # h_i = f_i(h_{i-1})
            nxt = iface.send(h, ctx)  # block i now holds the gradient of <h_i, δ̂_i>
            if learn:
                if avail[i]:
                    opt.step()  # update unlocked: block i does not wait for the layers above
                    self.updates[i] += 1
                opt.zero_grad(set_to_none=True)
                if i > 0:  # message.grad = δ̂_i back-propagated through f_i: target of M_{i-1}
                    self._update_synthesizer(i - 1, avail[i - 1], oracle)
            message = nxt
        loss = task_loss(self.net.head(message), y)
        self.head_opt.zero_grad(set_to_none=True)
        loss.backward()  # true gradient at the last message: target of M_{N-1}
        if avail[-1]:
            self.head_opt.step()
            self.head_updates += 1
        if learn:
            self._update_synthesizer(len(self.interfaces) - 1, avail[-2], oracle)
        return loss.detach()

    def state_dict(self) -> dict:
        """Everything a resumed run needs of the trainer (see ``checkpoint``)."""
        return {
            "net": self.net.state_dict(),
            "block_opts": [o.state_dict() for o in self.block_opts],
            "head_opt": self.head_opt.state_dict(),
            "interfaces": [i.checkpoint_state() for i in self.interfaces],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "updates": list(self.updates),
            "head_updates": self.head_updates,
            "availability": self.availability.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        for o, o_state in zip(self.block_opts, state["block_opts"], strict=True):
            o.load_state_dict(o_state)
        self.head_opt.load_state_dict(state["head_opt"])
        for i, i_state in zip(self.interfaces, state["interfaces"], strict=True):
            i.load_checkpoint_state(i_state)
        for s, s_state in zip(self.schedulers, state["schedulers"], strict=True):
            s.load_state_dict(s_state)
        self.updates, self.head_updates = list(state["updates"]), state["head_updates"]
        self.availability.set_state(state["availability"])

    def _update_synthesizer(self, i: int, available: bool, oracle: list[torch.Tensor] | None = None) -> None:
        if available:
            self.interfaces[i].update(None if oracle is None else oracle[i])
        else:
            self.interfaces[i].discard()

    def _true_gradients(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """dL/dh_i for every block output on this batch, by full backprop through the network as it
        is at the start of the step (the oracle targets of ``synth_target="true"``). The network's
        parameters receive no gradient; BatchNorm's running statistics are left as they were."""
        saved = [(m, m.momentum) for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m, _ in saved:
            m.momentum = 0.0  # a forward in train mode that does not move the running statistics
        try:
            hs, h = [], x
            for block in self.net.blocks:
                h = block(h)
                hs.append(h)
            grads = torch.autograd.grad(task_loss(self.net.head(h), y), hs)
        finally:
            for m, momentum in saved:
                m.momentum = momentum
        return [g.detach() for g in grads]

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> float:
        """Classification error on (x, y), in eval mode (interfaces are the identity)."""
        self.net.eval()
        wrong = torch.zeros((), dtype=torch.long, device=x.device)
        for start in range(0, x.shape[0], chunk):
            logits = self.net(x[start : start + chunk])
            wrong += (logits.argmax(1) != y[start : start + chunk]).sum()
        self.train()
        return wrong.item() / x.shape[0]  # one read per evaluation

    def gradient_cosines(self, x: torch.Tensor, y: torch.Tensor) -> list[float]:
        """Cosine similarity between each synthesizer's prediction and the true back-propagated
        gradient dL/dh_i on a batch. Diagnostic only: it runs on copies and updates nothing."""
        return self.gradient_diagnostics(x, y)["grad_cosine"]

    def gradient_diagnostics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
        """How good the synthetic gradients are, per interface, on one batch (on copies of the
        network and synthesizers; nothing is updated):

        - ``grad_cosine``: cos(δ̂_i, δ_i), prediction vs the true back-propagated gradient;
        - ``fit_cosine``: cos(δ̂_i, t_i), prediction vs the target it regresses onto, where
          t_i = J_{i+1}ᵀ (s·δ̂_{i+1}) is the next synthetic gradient back-propagated through block
          i+1 (bootstrapping) and, for the last interface, the true gradient: how well each
          synthesizer fits what it is taught;
        - ``target_cosine``: cos(t_i, δ_i), its target vs the true gradient: how much of the true
          gradient the bootstrapped target still carries.
        """
        names = ("grad_cosine", "fit_cosine", "target_cosine")
        if self.cfg.method not in ("dni", "cdni"):
            return {name: [] for name in names}
        net, ifaces = copy.deepcopy(self.net), copy.deepcopy(self.interfaces)
        hs, message = [], x
        for block in net.blocks:
            message = block(message)
            message.retain_grad()
            hs.append(message)
        task_loss(net.head(message), y).backward()  # true gradients, full backprop
        ctx = self.context(y)

        def cos(a: torch.Tensor, b: torch.Tensor) -> float:
            return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()

        with torch.no_grad():
            preds = [iface.synthesizer(h.detach(), ctx) for h, iface in zip(hs, ifaces)]
        targets = []
        for i in range(len(hs) - 1):  # t_i = J_{i+1}ᵀ (s·δ̂_{i+1})
            h_in = hs[i].detach().requires_grad_()
            h_out = net.blocks[i + 1](h_in)
            targets.append(torch.autograd.grad(h_out, h_in, ifaces[i + 1].scale * preds[i + 1])[0])
        targets.append(hs[-1].grad)  # the last interface regresses onto the true gradient
        return {
            "grad_cosine": [cos(p, h.grad) for p, h in zip(preds, hs)],
            "fit_cosine": [cos(p, t) for p, t in zip(preds, targets)],
            "target_cosine": [cos(t, h.grad) for t, h in zip(targets, hs)],
        }


def train_ff(
    cfg: FFConfig, data: Dataset, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None, checkpoint: Checkpoint | None = None,
) -> FFRun:
    """Train one network with ``cfg`` on ``data`` and log on the step grid.

    device: where it trains (None: the CPU). checkpoint: save the run's whole state when due and
    resume from the saved state if there is one (the final run is the same either way).
    The losses stay on the device between log points; raises ``DivergenceError`` at the log point
    after the loss became NaN or infinite, naming the step where it did.
    """
    device = torch.device(device or "cpu")
    data = data.on(device)
    trainer = FFTrainer(cfg, data.shape, data.n_classes, device)
    sampler = BatchSampler(data.x_train, data.y_train, cfg.batch_size, seed=cfg.seed)
    diag = diagnostic_batch(cfg, data)
    run = FFRun(config=cfg)
    trainer.train()
    losses = Meter()
    synth_losses = [Meter() for _ in trainer.interfaces]
    done, run.history = resume_batch_loop(checkpoint, device, trainer, sampler, losses, synth_losses)
    nan = torch.tensor(float("nan"))
    bar = tqdm(range(done + 1, cfg.steps + 1), desc=desc or cfg.method, disable=not progress, mininterval=5, leave=False)
    for step in bar:
        x, y = sampler.next()
        losses.add(trainer.step(x, y), step)
        for meter, iface in zip(synth_losses, trainer.interfaces):
            if iface.mode != "off":
                meter.add(nan if iface.last_loss_tensor is None else iface.last_loss_tensor, step)
        if step % cfg.log_every == 0 or step == cfg.steps:
            values, steps = losses.flush()
            values = [v / cfg.batch_size for v in values]  # per example, as the history has it
            run.history.append(log_row(trainer, step, values, steps, [m.flush()[0] for m in synth_losses], data, diag))
            bar.set_postfix(loss=f"{run.history[-1]['train_loss']:.3f}", err=f"{run.history[-1]['test_error']:.3f}")
        if checkpoint is not None and step < cfg.steps and checkpoint.due(step):
            checkpoint.save(batch_loop_state(step, trainer, sampler, run.history, losses, synth_losses))
    run.test_error = run.history[-1]["test_error"]
    run.updates = list(trainer.updates)
    run.head_updates = trainer.head_updates
    run.synth_updates = [i.n_updates for i in trainer.interfaces]
    return run


def diagnostic_batch(cfg: FFConfig, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's fixed random batch for the gradient diagnostics, on the data's device (a
    permutation from its own generator: datasets may be stored sorted by class)."""
    idx = torch.randperm(data.x_train.shape[0], generator=torch.Generator().manual_seed(cfg.seed + 1))
    idx = idx.to(data.x_train.device)[: cfg.diag_batch]
    return data.x_train[idx], data.y_train[idx]


def log_row(
    trainer: FFTrainer, step: int, values: list[float], steps: list[int], synth: list[list[float]], data: Dataset,
    diag: tuple[torch.Tensor, torch.Tensor], who: str = "",
) -> dict:
    """The history row of a log point: ``values`` the per-example training losses since the last one
    (at ``steps``), ``synth`` each interface's synthesizer losses; raises ``DivergenceError`` naming
    the step where the loss stopped being finite (``who``: what else names the run)."""
    cfg = trainer.cfg
    bad = first_non_finite(values, steps)
    if bad is not None:
        raise DivergenceError(
            f"method={cfg.method!r}, depth={cfg.depth}{who}: the training loss became {bad[1]} at step {bad[0]}; "
            f"try a smaller lr (now {cfg.lr}) or grad_scale (now {cfg.grad_scale})"
        )
    return {
        "step": step,
        "train_loss": sum(values) / len(values),
        "test_error": trainer.evaluate(data.x_test, data.y_test),
        "synth_loss": [_mean(a) for a in synth],
        **trainer.gradient_diagnostics(*diag),
    }


def _mean(values: list[float]) -> float | None:
    """The mean of a log interval's synthesizer losses (NaN if one came before the first update), None if none."""
    return sum(values) / len(values) if values else None
