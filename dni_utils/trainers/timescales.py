"""Two networks at two timescales (paper section 3.4, "multi-network system"), our design of the task.

A stream of digits arrives one per *tick*, ``batch_size`` independent streams side by side.

- **Network A** ticks every tick: a digit encoder feeding an LSTM cell. It has a task of its own
  (is this digit odd?) and sends a *message* (a linear read-out of its state) every tick.
- **Network B** ticks every ``T`` ticks: an LSTM cell that reads the ``T`` messages A sent since
  B's last tick (concatenated) and must say how many of those ``T`` digits were large (>= 5): a
  classification over 0..T. A's own task does not need largeness, so B's task is solved only if
  A learns, from B's error, to put it into its messages.

The edge A -> B is a ``BackwardInterface`` (the same class as every other notebook's), and the
methods differ only in how B's error reaches A:

- ``bptt``: A is update-locked. It keeps the graph of the whole window and updates once, when B
  has ticked, from one backward pass through B and A's ``T`` ticks (its own losses included).
- ``dni``: A updates every tick, from its own loss plus ``scale · δ̂_t``, the synthesizer's
  prediction of ∂L_B/∂m_t injected at its message (``inject``). When B ticks, the gradient that
  reaches each of the ``T`` messages is the regression target of the prediction made for it.
- ``dni_state``: as ``dni``, the synthesizer also reads A's hidden state h_t as context (no label:
  everything A knows at tick t, of which the message is a 16-unit read-out).
- ``cdni``: as ``dni``, the synthesizer also reads the digit's label (one-hot) as context. B's
  target is a function of the window's labels (how many are >= 5), so this context all but tells
  the synthesizer the answer: it is the paper's kind of context, and an easy one here.
- ``cdni_own``: as ``dni``, the synthesizer reads A's own-task label (odd or even, one-hot) as
  context: a label A is trained on that does not contain B's target (of the odd digits 3 in 5 are
  large, of the even ones 2 in 5).
- ``none`` (No B signal): as ``dni`` with the interface off: A learns from its own task only; B
  still learns to read whatever A sends. The lower bound that shows the interface matters.

A's recurrent state is carried along the stream; gradients flow through it within an update
window only (``T`` ticks for ``bptt``, one tick otherwise), and B's state is carried across its
ticks with a one-tick truncation. Neither task needs memory beyond B's window, so the comparison
is about when A's updates happen, not about how far back gradients reach.
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

from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.mechanism.synthesizers import MLPSynthesizer
from dni_utils.tools.checkpoint import Checkpoint, rng_state, set_rng_state
from dni_utils.trainers.recurrent import DivergenceError, SeriesMeter

TIMESCALE_METHODS = ("bptt", "dni", "dni_state", "cdni", "cdni_own", "none")
TIMESCALE_LABELS = {"bptt": "BPTT", "dni": "DNI", "dni_state": "DNI, synthesizer reads A's state", "cdni": "cDNI",
                    "cdni_own": "cDNI, A's own label", "none": "No B signal"}
SYNTHETIC = ("dni", "dni_state", "cdni", "cdni_own")  # the methods whose A learns from a synthetic gradient
N_DIGITS = 10
LARGE = 5  # B counts the digits >= LARGE


def check_timescale_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in TIMESCALE_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={methods!r} is invalid: expected a non-empty subset of {TIMESCALE_METHODS}")
    return list(methods)


def own_labels(digits: torch.Tensor) -> torch.Tensor:
    """A's task at every tick: 1 if the digit is odd. digits: (t, B) -> (t, B)."""
    return digits % 2


def context_size(method: str, hidden_a: int) -> int:
    """How many numbers the synthesizer of ``method`` reads beside the message (0: none)."""
    return {"cdni": N_DIGITS, "cdni_own": 2, "dni_state": hidden_a}.get(method, 0)


def synthesizer_context(method: str, digits_t: torch.Tensor, own_y_t: torch.Tensor,
                        hidden: Callable[[], torch.Tensor]):
    """The synthesizer's context at one tick (None when ``method`` reads none): the one-hot digit
    (``cdni``), the one-hot own-task label (``cdni_own``) or A's hidden state, cut from A's graph
    (``dni_state``; ``hidden()`` gives it, called only then). Any leading shape: (B,) for one run, (B, R) for a group."""
    if method == "cdni":
        return F.one_hot(digits_t, N_DIGITS).float()
    if method == "cdni_own":
        return F.one_hot(own_y_t, 2).float()
    if method == "dni_state":
        return hidden().detach()
    return None


def window_labels(digits: torch.Tensor) -> torch.Tensor:
    """B's task for a window: how many of its digits are large (>= 5). digits: (T, B) -> (B,) in 0..T."""
    return (digits >= LARGE).sum(0)


class NetworkA(nn.Module):
    """Digit encoder (Linear, ReLU) -> LSTM cell -> its own task's logits and a message.

    The state is ``s = [h, c]``, (B, 2H); the message is a linear read-out of ``h``.
    """

    def __init__(self, in_features: int, encoder: int, hidden: int, message: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_features, encoder), nn.ReLU())
        self.cell = nn.LSTMCell(encoder, hidden)
        self.own = nn.Linear(hidden, 2)
        self.message = nn.Linear(hidden, message)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 2 * self.hidden, device=self.own.weight.device)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, ...) one digit per stream -> own logits (B, 2), message (B, M), s' (B, 2H)."""
        h, c = self.cell(self.encoder(x), (s[:, : self.hidden], s[:, self.hidden :]))
        return self.own(h), torch.tanh(self.message(h)), torch.cat([h, c], dim=1)


class NetworkB(nn.Module):
    """An LSTM cell that reads the window's messages (concatenated) -> logits over counts 0..T."""

    def __init__(self, period: int, message: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = nn.LSTMCell(period * message, hidden)
        self.head = nn.Linear(hidden, period + 1)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 2 * self.hidden, device=self.head.weight.device)

    def forward(self, messages: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """messages: (B, T·M) -> logits (B, T + 1), s' (B, 2H)."""
        h, c = self.cell(messages, (s[:, : self.hidden], s[:, self.hidden :]))
        return self.head(h), torch.cat([h, c], dim=1)


@dataclass
class TimescaleSystem:
    """Both networks, the interface on the edge A -> B, their optimisers and carried states."""

    a: nn.Module
    b: nn.Module
    interface: BackwardInterface
    opt_a: torch.optim.Optimizer | None
    opt_b: torch.optim.Optimizer | None
    method: str
    state_a: torch.Tensor | None = None
    state_b: torch.Tensor | None = None

    def train(self) -> None:
        for m in (self.a, self.b, self.interface):
            m.train()

    def eval(self) -> None:
        for m in (self.a, self.b, self.interface):
            m.eval()


@dataclass
class WindowStats:
    """What one window gave. Its scalars stay on the device, as tensors: a trainer reads them with
    the others at a log point (``scalars()``, then ``summarize_window``); the float properties
    ``own_loss``, ``b_loss``, ``synth_loss`` and ``synth_cos`` read them at once (a host
    synchronisation each: for tests, not for a training loop)."""

    own_losses: torch.Tensor  # (T,) A's task loss at each tick, summed over the streams
    b_loss_sum: torch.Tensor  # 0-d, B's task loss summed over the streams
    own_correct: torch.Tensor  # 0-d, A's correct answers in the window (over ticks and streams)
    b_correct: torch.Tensor  # 0-d, B's correct counts (over streams)
    batch: int = 1  # streams
    synth_losses: torch.Tensor | None = None  # (T,) the synthesizer loss of each message's target
    synth_cos_mean: torch.Tensor | None = None  # 0-d, mean cosine between each injected δ̂_t and its target δ_t
    a_steps: list[int] = field(default_factory=list)  # ticks (0-based, within the window) after which A stepped
    targets: list[torch.Tensor] = field(default_factory=list)  # the gradient each message received from B

    def scalars(self) -> torch.Tensor:
        """One 1-d tensor on the device: A's T tick losses, B's loss, then (synthetic-gradient
        methods) the T synthesizer losses and the mean cosine."""
        parts = [self.own_losses, self.b_loss_sum.reshape(1)]
        if self.synth_losses is not None:
            parts += [self.synth_losses, self.synth_cos_mean.reshape(1)]
        return torch.cat(parts)

    def _read(self) -> dict[str, float]:
        return summarize_window(self.scalars().tolist(), self.own_losses.numel(), self.batch)

    @property
    def own_loss(self) -> float:
        """A's task loss per digit, mean over the window's ticks (reads the device)."""
        return self._read()["own_loss"]

    @property
    def b_loss(self) -> float:
        """B's task loss per window (reads the device)."""
        return self._read()["b_loss"]

    @property
    def synth_loss(self) -> float:
        """Mean synthesizer loss over the window's T targets, NaN if none (reads the device)."""
        return self._read()["synth_loss"]

    @property
    def synth_cos(self) -> float:
        """Mean cosine between each injected δ̂_t and its target δ_t, NaN if none (reads the device)."""
        return self._read()["synth_cos"]


def summarize_window(values: list[float], period: int, batch: int) -> dict[str, float]:
    """A window's numbers from the values of ``WindowStats.scalars()`` read as floats, with the
    arithmetic (and order) the history's averages are made of; NaN for what the method lacks."""
    own = 0.0
    for v in values[:period]:  # summed tick by tick, in order
        own += v
    synth = values[period + 1 : 2 * period + 1]
    return {"own_loss": own / (period * batch), "b_loss": values[period] / batch,
            "synth_loss": sum(synth) / period if synth else float("nan"),
            "synth_cos": values[2 * period + 1] if synth else float("nan")}


def _step(opt: torch.optim.Optimizer | None, step: bool) -> None:
    if opt is not None and step:
        opt.step()
        opt.zero_grad(set_to_none=True)


def train_window(system: TimescaleSystem, x: torch.Tensor, digits: torch.Tensor, step: bool = True) -> WindowStats:
    """Train on one window of ``T`` ticks (x: (T, B, ...), digits: (T, B)), ending with B's tick.

    step: A's and B's optimisers step (training); with False their gradients accumulate in
    ``.grad`` over the window and nothing steps (tests). The synthesizer always learns.
    """
    a, b, interface = system.a, system.b, system.interface
    period, batch = digits.shape
    method = system.method
    s_a = a.initial_state(batch) if system.state_a is None else system.state_a.detach()
    s_b = b.initial_state(batch) if system.state_b is None else system.state_b.detach()
    own_y = own_labels(digits)
    messages, contexts, total, own_losses, own_correct, a_steps = [], [], 0.0, [], 0, []
    for t in range(period):
        own, m, s_a = a(x[t], s_a)
        loss_t = F.cross_entropy(own, own_y[t], reduction="sum")  # summed over the streams
        own_losses.append(loss_t.detach())  # stays on the device (no per-tick read)
        own_correct = own_correct + (own.argmax(1) == own_y[t]).sum()
        if method == "bptt":  # A waits: its graph grows over the window
            total = total + loss_t
            messages.append(m)
            continue
        context = synthesizer_context(method, digits[t], own_y[t], lambda: s_a[:, : a.hidden])
        contexts.append(context)
        (loss_t + interface.inject(m, context)).backward()  # ∂/∂m_t = scale · δ̂_t (zero when off)
        _step(system.opt_a, step)
        a_steps.append(t)
        messages.append(m.detach().requires_grad_())  # B reads the message, cut from A's graph
        s_a = s_a.detach()  # A's next tick starts a new graph
    logits, s_b = b(torch.cat(messages, dim=1), s_b)  # B ticks
    counts = window_labels(digits)
    b_loss = F.cross_entropy(logits, counts, reduction="sum")
    (total + b_loss).backward()  # BPTT: one backward pass through B and A's whole window
    _step(system.opt_b, step)
    if method == "bptt":
        _step(system.opt_a, step)
        a_steps.append(period - 1)
    stats = WindowStats(torch.stack(own_losses), b_loss.detach(), own_correct, (logits.argmax(1) == counts).sum(),
                        batch, a_steps=a_steps)
    if method in SYNTHETIC:  # each message's true gradient trains the prediction made for it
        stats.targets = [m.grad.detach().clone() for m in messages]
        with torch.no_grad():  # the synthesizer has not stepped since the window began: these are the injected δ̂_t
            cos = [F.cosine_similarity(interface.synthetic_gradient(m, c), g, dim=1).mean()
                   for m, c, g in zip(messages, contexts, stats.targets)]
        stats.synth_cos_mean = torch.stack(cos).mean()
        stats.synth_losses = torch.stack([interface.update(g) for g in stats.targets])
    system.state_a, system.state_b = s_a.detach(), s_b.detach()
    return stats


@torch.no_grad()
def evaluate(system: TimescaleSystem, x: torch.Tensor, digits: torch.Tensor, period: int) -> tuple[float, float]:
    """A's and B's accuracy on a fixed stream (x: (L, B, ...), L a multiple of T), from zero states,
    in eval mode: (fraction of ticks A answers right, fraction of windows B counts right). The
    counts stay on the device until the end (one read)."""
    system.eval()
    a, b = system.a, system.b
    batch = digits.shape[1]
    s_a, s_b = a.initial_state(batch), b.initial_state(batch)
    own_right, b_right, messages = 0, 0, []
    for t in range(digits.shape[0]):
        own, m, s_a = a(x[t], s_a)
        own_right = own_right + (own.argmax(1) == own_labels(digits[t])).sum()
        messages.append(m)
        if len(messages) == period:
            logits, s_b = b(torch.cat(messages, dim=1), s_b)
            b_right = b_right + (logits.argmax(1) == window_labels(digits[t + 1 - period : t + 1])).sum()
            messages = []
    system.train()
    own_right, b_right = torch.stack([torch.as_tensor(own_right), torch.as_tensor(b_right)]).tolist()
    return own_right / digits.numel(), b_right / (digits.numel() // period)


class DigitStream:
    """Endless windows of digits drawn uniformly (with replacement) from ``images``/``labels``,
    ``batch`` streams side by side, from a seeded generator of its own."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch: int, seed: int) -> None:
        if batch < 1:
            raise ValueError(f"batch_size={batch!r} is invalid: expected a positive integer")
        self.images, self.labels, self.batch = images, labels, batch
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, ticks: int) -> torch.Tensor:
        """The next window's digit indices, (ticks, B), on the host (a group of runs stacks its
        runs' draws and reads the images once, ``grouped_timescales``)."""
        return torch.randint(self.labels.numel(), (ticks, self.batch), generator=self.generator)

    def window(self, ticks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (ticks, B, *image), digits: (ticks, B), on the images' device (the draw is on the host)."""
        idx = self.draw(ticks).to(self.labels.device, non_blocking=True)  # no stream synchronisation on CUDA
        return self.images[idx], self.labels[idx]


@dataclass
class TimescaleData:
    """The digits a run trains on and the fixed test stream it is evaluated on."""

    x_train: torch.Tensor  # (N, ...) images
    y_train: torch.Tensor  # (N,) digits
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: dict = field(default_factory=dict)  # the data set's description (``Dataset.describe()``), if any

    def describe(self) -> dict:
        """What the digits are (part of a checkpoint's key): ``info``, else their sizes."""
        return self.info or {"n_train": int(self.y_train.numel()), "n_test": int(self.y_test.numel()),
                             "shape": list(self.x_train.shape[1:])}

    def on(self, device: torch.device | str) -> TimescaleData:
        """A copy whose tensors are on ``device`` (this one itself when they are there already)."""
        if self.x_train.device == torch.device(device):
            return self
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return dataclasses.replace(self, **moved)


@dataclass
class TimescaleConfig:
    method: str = "dni"  # bptt | dni | dni_state | cdni | cdni_own | none
    period: int = 4  # T: B ticks every T ticks of A
    ticks: int = 20_000  # training budget in ticks (a multiple of T)
    batch_size: int = 32  # streams side by side
    encoder: int = 128  # A's digit encoder units
    hidden_a: int = 64  # A's LSTM units
    message: int = 16  # message size
    hidden_b: int = 64  # B's LSTM units
    lr: float = 1e-3  # Adam, A and B
    synth_lr: float = 1e-3  # Adam, synthesizer
    synth_hidden_layers: int = 0  # 0 = linear synthesizer
    synth_hidden: int = 128
    grad_scale: float = 1.0  # factor on the injected synthetic gradient
    eval_every: int = 400  # ticks between evaluations (a multiple of T)
    eval_streams: int = 256  # test streams evaluated side by side
    eval_windows: int = 4  # B's windows per test stream
    timeline_windows: int = 3  # windows whose update events are recorded for the timeline figure
    seed: int = 0

    def validate(self) -> TimescaleConfig:
        check_timescale_methods([self.method])
        for name in ("period", "ticks", "batch_size", "encoder", "hidden_a", "message", "hidden_b", "synth_hidden",
                     "eval_every", "eval_streams", "eval_windows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
        if not isinstance(self.synth_hidden_layers, int) or self.synth_hidden_layers < 0:
            raise ValueError(f"synth_hidden_layers={self.synth_hidden_layers!r} is invalid: expected an integer >= 0")
        for name in ("lr", "synth_lr", "grad_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected a positive number")
        for name in ("ticks", "eval_every"):
            if getattr(self, name) % self.period:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: expected a multiple of the period "
                                 f"T={self.period}")
        return self

    def train_steps(self) -> int:
        """Training iterations of the run: one per window of T ticks (B's tick ends it)."""
        return self.ticks // self.period

    def capped(self, n: int) -> TimescaleConfig:
        """The same run cut to at most ``n`` windows (its evaluation interval too, both still multiples
        of T): a dry run or a warm-up."""
        ticks = min(self.ticks, n * self.period)
        return dataclasses.replace(self, ticks=ticks, eval_every=min(self.eval_every, ticks))


@dataclass
class TimescaleRun:
    config: TimescaleConfig
    history: list[dict] = field(default_factory=list)  # one entry per evaluation
    timeline: dict[str, list[int]] = field(default_factory=dict)  # network -> ticks it updated after
    final_b: float = float("nan")  # B's test accuracy at the end
    final_a: float = float("nan")

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "final_b": self.final_b, "final_a": self.final_a,
                "timeline": self.timeline, "history": self.history}


def build_system(cfg: TimescaleConfig, in_features: int) -> TimescaleSystem:
    """A, B, the interface on A's message and the optimisers of one run (seeded by ``cfg.seed``)."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    a = NetworkA(in_features, cfg.encoder, cfg.hidden_a, cfg.message)
    b = NetworkB(cfg.period, cfg.message, cfg.hidden_b)
    synth = MLPSynthesizer(cfg.message, cfg.synth_hidden_layers, cfg.synth_hidden, context_size(cfg.method, cfg.hidden_a))
    mode = "dni" if cfg.method in SYNTHETIC else "off"
    interface = BackwardInterface(synth, lr=cfg.synth_lr, scale=cfg.grad_scale, mode=mode)
    opt_a = torch.optim.Adam(a.parameters(), lr=cfg.lr)
    opt_b = torch.optim.Adam(b.parameters(), lr=cfg.lr)
    return TimescaleSystem(a, b, interface, opt_a, opt_b, cfg.method)


def test_stream(data: TimescaleData, cfg: TimescaleConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test stream every run of a grid is evaluated on (same seed: the same digits)."""
    stream = DigitStream(data.x_test, data.y_test, cfg.eval_streams, seed=10_000)
    return stream.window(cfg.eval_windows * cfg.period)


def train_timescales(
    cfg: TimescaleConfig, data: TimescaleData, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None, checkpoint: Checkpoint | None = None,
) -> TimescaleRun:
    """Train A and B on the digit stream for ``cfg.ticks`` ticks; evaluate every ``eval_every``.

    device: where it trains (None: the CPU); the digits are moved there, the stream's draws stay on
    the host generator. checkpoint: save the run's whole state when due and resume from the saved
    state if there is one (the final run is the same either way). The losses stay on the device
    until the next evaluation; raises ``DivergenceError`` there if one became non-finite, naming
    the window."""
    device = torch.device(device or "cpu")
    system = build_system(cfg, math.prod(data.x_train.shape[1:]))  # built on the CPU from the seed, then moved
    for module in (system.a, system.b, system.interface):
        module.to(device)
    data = data.on(device)
    stream = DigitStream(data.x_train, data.y_train, cfg.batch_size, seed=cfg.seed + 1)
    x_test, y_test = test_stream(data, cfg)
    run = TimescaleRun(config=cfg, timeline={"A": [], "B": [], "synthesizer": []})
    counts = {"a_updates": 0, "b_updates": 0, "synth_updates": 0}
    meter = SeriesMeter()  # each window's scalars (WindowStats.scalars), tagged with the window
    first = 1
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        for name in ("a", "b", "opt_a", "opt_b"):
            getattr(system, name).load_state_dict(saved[name])
        system.interface.load_checkpoint_state(saved["interface"])
        system.state_a, system.state_b = (None if s is None else s.to(device) for s in saved["states"])
        set_rng_state(saved["rng"], stream.generator)
        run.history, run.timeline, counts = saved["history"], saved["timeline"], saved["counts"]
        meter.load_state_dict(saved["meter"], device)
        first = saved["step"] + 1
    system.train()
    windows = cfg.ticks // cfg.period
    bar = tqdm(range(first, windows + 1), desc=desc or cfg.method, disable=not progress, mininterval=5, leave=False)
    for w in bar:
        x, digits = stream.window(cfg.period)
        stats = train_window(system, x, digits)
        meter.add(stats.scalars(), w)
        start = (w - 1) * cfg.period
        counts["a_updates"] += len(stats.a_steps)
        counts["b_updates"] += 1
        synth = 0 if stats.synth_losses is None else cfg.period
        counts["synth_updates"] += synth
        if w <= cfg.timeline_windows:
            run.timeline["A"] += [start + t for t in stats.a_steps]
            run.timeline["B"].append(start + cfg.period - 1)
            if synth:
                run.timeline["synthesizer"].append(start + cfg.period - 1)
        tick = w * cfg.period
        if tick % cfg.eval_every == 0 or w == windows:
            acc = {"own_loss": [], "b_loss": [], "synth_loss": [], "synth_cos": []}
            for values, window in meter.flush():
                numbers = summarize_window(values, cfg.period, cfg.batch_size)
                if not (math.isfinite(numbers["own_loss"]) and math.isfinite(numbers["b_loss"])):
                    raise DivergenceError(
                        f"method={cfg.method!r}, T={cfg.period}: a training loss became non-finite in window {window}; "
                        f"try a smaller lr (now {cfg.lr}) or synth_lr (now {cfg.synth_lr})"
                    )
                for k in acc:
                    if math.isfinite(numbers[k]):
                        acc[k].append(numbers[k])
            acc_a, acc_b = evaluate(system, x_test, y_test, cfg.period)
            run.history.append({"tick": tick, **counts, "acc_a": acc_a, "acc_b": acc_b,
                                **{k: (sum(v) / len(v) if v else None) for k, v in acc.items()}})
            bar.set_postfix(acc_b=f"{acc_b:.3f}")
        if checkpoint is not None and w < windows and checkpoint.due(w):
            checkpoint.save({
                "step": w, **{name: getattr(system, name).state_dict() for name in ("a", "b", "opt_a", "opt_b")},
                "interface": system.interface.checkpoint_state(), "states": (system.state_a, system.state_b),
                "rng": rng_state(stream.generator), "history": run.history, "timeline": run.timeline,
                "counts": counts, "meter": meter.state_dict(),
            })
    run.final_a, run.final_b = run.history[-1]["acc_a"], run.history[-1]["acc_b"]
    return run
