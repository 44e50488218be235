"""Complete unlock (notebook 04, paper section 3.3): every layer trains apart from every other.

Each hidden block ``f_i`` and the output layer get, on their input edge, a ``ForwardInterface``
whose synthesizer ``I_i`` predicts the layer's input from the network input ``x`` (block 0 reads
``x`` itself), and each hidden block gets, on its output edge, a ``BackwardInterface`` whose
synthesizer ``M_i`` predicts the gradient of the loss with respect to its output. At a step, layer i

1. computes ``h_i = f_i(ĥ_{i-1})`` on its synthetic input ``ĥ_{i-1} = I_i(x)`` (no forward wait),
2. updates at once from ``δ̂_i = M_i(h_i, c)`` (no backward wait; the output layer uses the loss),
3. sends ``h_i`` forward, the regression target of ``I_{i+1}``: ``L_I = ‖ĥ_i − h_i‖² / B``, and
   the gradient at its own input, ``∂⟨h_i, δ̂_i⟩/∂ĥ_{i-1}``, backward, the target of ``M_{i-1}``:
   ``L_M = ‖δ̂_{i-1} − δ_{i-1}‖² / B``.

Both targets are bootstrapped: no real forward or backward pass through the network ever runs
during training. At test time the blocks are composed into the ordinary network
``head ∘ f_{N-1} ∘ … ∘ f_0`` (the interfaces are the identity in eval mode), which none of them
was trained in.

Choice where the paper is silent: ``M_{i-1}`` predicts at the output of block i-1 and is regressed
onto the gradient at block i's *synthetic* input; the two points coincide as ``I_i`` learns.

Paper scale. ``train_unlock`` takes a ``device`` (the data, the blocks, the synthesizers and every
optimiser state live there; the modules are built on the CPU with the same seed and then moved, so
the CPU numbers are those of before) and reads nothing back from it between log points: the
per-step losses wait on the device in ``Meter``s and are read at the next log point, where a NaN or
infinite training loss raises ``DivergenceError`` naming the step it first appeared at. With a
``Checkpoint`` it saves its whole state (blocks, interfaces, optimisers, schedulers, sampler,
generators, history, the losses since the last log point, counters) and resumes from it to the
same numbers as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn
from tqdm import tqdm

from dni_utils.data.images import BatchSampler, Dataset
from dni_utils.mechanism.interfaces import BackwardInterface, ForwardInterface
from dni_utils.mechanism.models import FFNet, make_net
from dni_utils.mechanism.synthesizers import SYNTHESIZER_KINDS, make_synthesizer
from dni_utils.tools.checkpoint import Checkpoint, Meter, batch_loop_state, first_non_finite, resume_batch_loop
from dni_utils.tools.device import use_device
from dni_utils.trainers.feedforward import DivergenceError, one_hot, task_loss


@dataclass
class UnlockConfig:
    depth: int = 4  # hidden blocks; each has a synthetic input (but the first) and a synthetic gradient
    width: int = 256  # units per hidden block
    steps: int = 500_000  # training iterations
    batch_size: int = 256
    lr: float = 3e-5  # Adam, for the blocks, the output layer and all synthesizers
    lr_milestones: tuple[float, ...] = (0.6, 0.8)  # fractions of `steps` where lr is divided (paper: 300k, 400k)
    lr_gamma: float = 0.1
    synth_lr: float = 0.0  # Adam learning rate of the synthesizers (0 = the same as lr)
    context: bool = True  # gradient synthesizers read the one-hot label (cDNI)
    grad_synth_kind: str = "linear"  # gradient synthesizers M_i: linear | mlp
    grad_synth_hidden_layers: int = 0
    grad_synth_hidden: int = 1024
    input_synth_kind: str = "mlp"  # synthetic-input models I_i(x): linear | mlp
    input_synth_hidden_layers: int = 1
    input_synth_hidden: int = 1024
    log_every: int = 1000  # steps between log points (the last step is always logged)
    seed: int = 0

    def validate(self) -> UnlockConfig:
        for name in ("depth", "width", "steps", "batch_size", "log_every", "grad_synth_hidden", "input_synth_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
        for name in ("grad_synth_kind", "input_synth_kind"):
            if getattr(self, name) not in SYNTHESIZER_KINDS[:2]:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown: expected one of {SYNTHESIZER_KINDS[:2]}")
        for name in ("lr", "lr_gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected a positive number")
        if self.synth_lr < 0:
            raise ValueError(f"synth_lr={self.synth_lr!r} is invalid: expected a positive number, or 0 for lr")
        if not all(0 < m < 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones={self.lr_milestones!r} is invalid: expected fractions in (0, 1)")
        return self

    def train_steps(self) -> int:
        """Training-loop iterations of the run."""
        return self.steps

    def capped(self, n: int) -> UnlockConfig:
        """The same run cut to at most ``n`` iterations, logged and evaluated at its last one (the
        learning-rate milestones, fractions of ``steps``, fall at the same fractions of the cut
        run): the paper-profile dry runs and the cost estimate's warm-up."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"max_steps={n!r} is invalid: expected a positive integer")
        return replace(self, steps=min(n, self.steps), log_every=min(n, self.log_every))


@dataclass
class UnlockRun:
    """What one complete-unlock run produced: the log and the final numbers."""

    config: UnlockConfig
    history: list[dict] = field(default_factory=list)  # one row per log point
    test_error: float = float("nan")  # final, of the composed network on the whole test set
    synthetic_test_error: float = float("nan")  # final, of the output layer on its synthetic input
    updates: list[int] = field(default_factory=list)  # parameter updates of each block, then the output layer
    grad_synth_updates: list[int] = field(default_factory=list)  # regression steps of each M_i
    input_synth_updates: list[int] = field(default_factory=list)  # regression steps of each I_i (blocks 1.., output)

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "history": self.history,
            "test_error": self.test_error,
            "synthetic_test_error": self.synthetic_test_error,
            "updates": self.updates,
            "grad_synth_updates": self.grad_synth_updates,
            "input_synth_updates": self.input_synth_updates,
        }


class UnlockTrainer:
    """A network whose layers each hold their own optimiser, synthetic input and synthetic gradient."""

    def __init__(
        self, cfg: UnlockConfig, in_shape: tuple[int, ...], n_classes: int, device: torch.device | str = "cpu"
    ) -> None:
        self.cfg = cfg.validate()
        self.n_classes = n_classes
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)  # everything is built on the CPU, as before, then moved to the device
        self.net: FFNet = make_net("fcn", in_shape, cfg.depth, cfg.width, n_classes)
        synth_lr = cfg.synth_lr or cfg.lr
        ctx = n_classes if cfg.context else 0
        self.grads = nn.ModuleList(
            BackwardInterface(
                make_synthesizer(cfg.grad_synth_kind, shape, cfg.grad_synth_hidden_layers, cfg.grad_synth_hidden,
                                 context_features=ctx),
                lr=synth_lr,
            )
            for shape in self.net.shapes
        )
        # The inputs of blocks 1 .. N-1 and of the output layer: the outputs of blocks 0 .. N-1.
        self.inputs = nn.ModuleList(
            ForwardInterface(
                make_synthesizer(cfg.input_synth_kind, in_shape, cfg.input_synth_hidden_layers,
                                 cfg.input_synth_hidden, out_shape=shape),
                lr=synth_lr,
            )
            for shape in self.net.shapes
        )
        for m in (self.net, self.grads, self.inputs):
            m.to(self.device)  # in place: the interfaces' optimisers keep their parameters
        self.block_opts = [torch.optim.Adam(b.parameters(), lr=cfg.lr) for b in self.net.blocks]
        self.head_opt = torch.optim.Adam(self.net.head.parameters(), lr=cfg.lr)
        opts = [*self.block_opts, self.head_opt, *(i.optimizer for i in [*self.grads, *self.inputs])]
        milestones = sorted({max(1, round(m * cfg.steps)) for m in cfg.lr_milestones})
        self.schedulers = [torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=cfg.lr_gamma) for o in opts]
        self.updates = [0] * (cfg.depth + 1)

    def context(self, y: torch.Tensor) -> torch.Tensor | None:
        return one_hot(y, self.n_classes) if self.cfg.context else None

    def train(self) -> None:
        for m in (self.net, self.grads, self.inputs):
            m.train()

    def eval(self) -> None:
        for m in (self.net, self.grads, self.inputs):
            m.eval()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One iteration: every layer trains on its synthetic input and gradient; returns the
        output layer's summed task loss on its synthetic input, a 0-d tensor on the device (divide
        its value by the batch size for the loss per example; reading it waits for the device)."""
        ctx = self.context(y)
        outputs: list[torch.Tensor] = []  # h_i, sent forward: targets of I_{i+1}
        input_grads: list[torch.Tensor] = []  # gradient at the input of layer i >= 1: targets of M_{i-1}
        for i, (block, iface, opt) in enumerate(zip(self.net.blocks, self.grads, self.block_opts)):
            u = x if i == 0 else self.inputs[i - 1].synthetic_input(x).requires_grad_()  # ĥ_{i-1} = I_i(x)
            h = block(u)  # h_i = f_i(ĥ_{i-1}): (B, W)
            iface.send(h, ctx)  # block i and u now hold the gradients of <h_i, δ̂_i>
            opt.step()
            opt.zero_grad(set_to_none=True)
            self.updates[i] += 1
            outputs.append(h.detach())
            if i > 0:
                input_grads.append(u.grad)
        u = self.inputs[-1].synthetic_input(x).requires_grad_()  # ĥ_{N-1} = I_N(x)
        loss = task_loss(self.net.head(u), y)
        self.head_opt.zero_grad(set_to_none=True)
        loss.backward()  # the true loss gradient, but at the output layer's synthetic input
        self.head_opt.step()
        self.updates[-1] += 1
        input_grads.append(u.grad)
        # The messages have crossed the edges: every synthesizer regresses onto what arrived.
        for iface, target in zip(self.grads, input_grads):
            iface.update(target)  # L_M = ‖δ̂_i − δ_i‖² / B
        for iface, target in zip(self.inputs, outputs):
            iface.update(target)  # L_I = ‖ĥ_i − h_i‖² / B
        for s in self.schedulers:
            s.step()
        return loss.detach()

    def state_dict(self) -> dict:
        """Everything a checkpoint needs of the trainer (taken between steps: nothing is pending)."""
        return {
            "net": self.net.state_dict(),
            "grads": [i.checkpoint_state() for i in self.grads],
            "inputs": [i.checkpoint_state() for i in self.inputs],
            "block_opts": [o.state_dict() for o in self.block_opts],
            "head_opt": self.head_opt.state_dict(),
            "schedulers": [s.state_dict() for s in self.schedulers],
            "updates": list(self.updates),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        for iface, s in zip(self.grads, state["grads"], strict=True):
            iface.load_checkpoint_state(s)
        for iface, s in zip(self.inputs, state["inputs"], strict=True):
            iface.load_checkpoint_state(s)
        for opt, s in zip(self.block_opts, state["block_opts"], strict=True):
            opt.load_state_dict(s)
        self.head_opt.load_state_dict(state["head_opt"])
        for sched, s in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(s)
        self.updates = list(state["updates"])

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> dict:
        """Test numbers in eval mode: the error of the composed network (real forward pass), the
        error of the output layer on its synthetic input, and for each synthetic-input model the
        relative error ``‖ĥ_i − h_i‖² / ‖h_i‖²`` against the composed network's real activations."""
        self.eval()
        wrong = wrong_synth = 0
        sq_err = [0.0] * self.cfg.depth
        sq_norm = [0.0] * self.cfg.depth
        for start in range(0, x.shape[0], chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            h = xb
            for i, block in enumerate(self.net.blocks):
                h = block(h)  # the real h_i of the composed network
                pred = self.inputs[i].synthesizer(xb)  # ĥ_i = I_{i+1}(x)
                sq_err[i] += (pred - h).pow(2).sum().item()
                sq_norm[i] += h.pow(2).sum().item()
            wrong += (self.net.head(h).argmax(1) != yb).sum().item()
            synth_logits = self.net.head(self.inputs[-1].synthesizer(xb))
            wrong_synth += (synth_logits.argmax(1) != yb).sum().item()
        self.train()
        return {
            "test_error": wrong / x.shape[0],
            "synthetic_test_error": wrong_synth / x.shape[0],
            "input_rel_error": [e / max(n, 1e-12) for e, n in zip(sq_err, sq_norm)],
        }


def train_unlock(
    cfg: UnlockConfig, data: Dataset, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None, checkpoint: Checkpoint | None = None,
) -> UnlockRun:
    """Train one completely unlocked network with ``cfg`` on ``data`` and log on the step grid.

    device: where it computes (``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``, or a ``torch.device``;
    None: the CPU).
    checkpoint: saves the run's whole state when due and resumes from the latest save (the result
    is the same as without it).

    Raises ``DivergenceError`` if the loss becomes NaN or infinite (at the next log point, naming
    the step where it first did).
    """
    device = use_device(device or "cpu")
    data = data.on(device)
    trainer = UnlockTrainer(cfg, data.shape, data.n_classes, device)
    sampler = BatchSampler(data.x_train, data.y_train, cfg.batch_size, seed=cfg.seed)
    run = UnlockRun(config=cfg)
    trainer.train()
    losses = Meter()  # the output layer's summed task loss per step
    synth_losses = [Meter() for _ in [*trainer.grads, *trainer.inputs]]  # L_M of each M_i, then L_I of each I_i
    start, run.history = resume_batch_loop(checkpoint, device, trainer, sampler, losses, synth_losses)
    bar = tqdm(range(start + 1, cfg.steps + 1), desc=desc or "complete unlock", disable=not progress, mininterval=5,
               leave=False, initial=start, total=cfg.steps)
    for step in bar:
        x, y = sampler.next()
        losses.add(trainer.step(x, y), step)
        for meter, iface in zip(synth_losses, [*trainer.grads, *trainer.inputs]):
            meter.add(iface.last_loss_tensor, step)
        if step % cfg.log_every == 0 or step == cfg.steps:
            values, steps = losses.flush()
            per_example = [v / cfg.batch_size for v in values]  # as loss.item() / batch, every step
            bad = first_non_finite(per_example, steps)
            if bad is not None:
                raise DivergenceError(
                    f"complete unlock, depth={cfg.depth}: the training loss became {bad[1]} at step {bad[0]}; "
                    f"try a smaller lr (now {cfg.lr})"
                )
            means = [sum(a) / len(a) for a in (m.flush()[0] for m in synth_losses)]
            run.history.append(
                {
                    "step": step,
                    "train_loss": sum(per_example) / len(per_example),
                    **trainer.evaluate(data.x_test, data.y_test),
                    "grad_synth_loss": means[: len(trainer.grads)],
                    "input_synth_loss": means[len(trainer.grads) :],
                }
            )
            bar.set_postfix(loss=f"{run.history[-1]['train_loss']:.3f}", err=f"{run.history[-1]['test_error']:.3f}")
        if checkpoint is not None and step < cfg.steps and checkpoint.due(step):
            checkpoint.save(batch_loop_state(step, trainer, sampler, run.history, losses, synth_losses))
    run.test_error = run.history[-1]["test_error"]
    run.synthetic_test_error = run.history[-1]["synthetic_test_error"]
    run.updates = list(trainer.updates)
    run.grad_synth_updates = [i.n_updates for i in trainer.grads]
    run.input_synth_updates = [i.n_updates for i in trainer.inputs]
    return run
