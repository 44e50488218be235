"""Character-level language model with truncated BPTT and DNI (paper section 4.2, Penn Treebank).

The training text is cut into ``batch_size`` contiguous streams, read side by side, one
character per step. The LSTM's state is carried from chunk to chunk along each stream across the
whole text (never reset inside an epoch). Training goes through the recurrent trainer of Copy
(``recurrent.run_episode``) one *segment* of ``segment`` steps at a time; each segment is an episode
whose start state is the previous segment's end state and whose end is an open boundary. So every
T steps the core steps from its loss plus the injected synthetic gradient, and the synthesizer is
regressed onto its bootstrapped target, exactly as for Copy; segments only bound how much text is
turned into one-hot tensors at once (a multiple of T, so they never move a boundary).

Metric: bits per character (BPC, Graves 2013): the mean negative log2-likelihood of the next
character. Validation BPC is measured every ``eval_every`` training characters by streaming the
whole validation text in eval mode with the state carried over (``eval_streams`` streams side by
side, each from a zero state). Early stopping: the test BPC reported is that of the checkpoint with
the best validation BPC. No learning-rate decay (the paper's protocol).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dni_utils.data.tasks import Episode
from dni_utils.data.text import TextCorpus, bits_per_character
from dni_utils.tools.checkpoint import Checkpoint, rng_state, set_rng_state
from dni_utils.tools.device import timer
from dni_utils.trainers.recurrent import (
    DivergenceError, SeriesMeter, build_recurrent, check_recurrent_config, run_episode, summarize_episode, unroll,
)


def batchify(ids: torch.Tensor, streams: int) -> torch.Tensor:
    """(N,) token ids -> (L, streams): ``streams`` contiguous pieces of the text side by side
    (the last N mod streams tokens are dropped)."""
    if not isinstance(streams, int) or isinstance(streams, bool) or streams < 1:
        raise ValueError(f"streams={streams!r} is invalid: expected a positive integer")
    length = ids.numel() // streams
    if length < 2:
        raise ValueError(f"a text of {ids.numel()} tokens is too short for {streams} streams")
    return ids[: length * streams].view(streams, length).t().contiguous()


def char_episode(streams: torch.Tensor, start: int, steps: int, n_vocab: int) -> Episode:
    """Steps ``start .. start + steps - 1`` of the streams: one-hot inputs (steps, B, V), the next
    character's id as the target (steps, B)."""
    x = F.one_hot(streams[start : start + steps], n_vocab).to(torch.get_default_dtype())  # float32 unless asked
    y = streams[start + 1 : start + steps + 1]
    return Episode(x, y, torch.ones(y.shape, dtype=torch.float32, device=y.device))


def char_loss(logits: torch.Tensor, episode: Episode, start: int) -> torch.Tensor:
    """Cross-entropy (nats) summed over the chunk's steps and the batch."""
    y = episode.y[start : start + logits.shape[0]]  # (t, B)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")


@torch.no_grad()
def evaluate_bpc(core: nn.Module, ids: torch.Tensor, n_vocab: int, streams: int = 1, chunk: int = 1000) -> float:
    """BPC of ``core`` on a whole text, streamed with the state carried over, in eval mode.

    The text is read on the core's device; the losses of its chunks are read back once, at the end."""
    was_training = core.training
    core.eval()
    state = core.initial_state(streams)
    data = batchify(ids, streams).to(state.device)  # (L, S)
    losses, count = [], 0
    for start in range(0, data.shape[0] - 1, chunk):
        ep = char_episode(data, start, min(chunk, data.shape[0] - 1 - start), n_vocab)
        logits, state = unroll(core, ep.x, state)
        losses.append(char_loss(logits, ep, 0))
        count += ep.y.numel()
    core.train(was_training)
    nats = 0.0
    for v in torch.stack(losses).tolist():  # summed chunk by chunk, in order
        nats += v
    return bits_per_character(nats, count)


@dataclass
class LMConfig:
    method: str = "dni"  # bptt | dni | dni_aux
    truncation: int = 8  # T, steps per chunk
    hidden: int = 256  # LSTM units
    batch_size: int = 32  # streams read side by side
    train_chars: int = 1_000_000  # training budget, characters (all streams together)
    eval_every: int = 100_000  # training characters between validation points
    eval_streams: int = 8  # streams the validation / test text is read in
    segment: int = 200  # steps turned into one episode (rounded up to a multiple of T)
    lr: float = 1e-3  # Adam, core
    synth_lr: float = 1e-3  # Adam, synthesizer
    synth_hidden_layers: int = 0
    synth_hidden: int = 256
    grad_scale: float = 0.1  # factor on the injected synthetic gradient (and the per-chunk discount)
    squash_cell: bool = False  # the synthesizer reads [h, tanh(c)] (see rnn.StateSynthesizer)
    aux_weight: float = 0.1  # DNI + Aux
    seed: int = 0

    def validate(self) -> LMConfig:
        return check_recurrent_config(self, ("truncation", "hidden", "batch_size", "train_chars", "eval_every",
                                             "eval_streams", "segment", "synth_hidden"))

    @property
    def segment_steps(self) -> int:
        """Steps per segment: ``segment`` rounded up to a multiple of T."""
        return math.ceil(self.segment / self.truncation) * self.truncation

    def train_steps(self) -> int:
        """Training iterations of the run: one per segment of all the streams (``segment_steps`` x
        ``batch_size`` characters; the last segment of an epoch may be shorter, which this ignores)."""
        return math.ceil(self.train_chars / (self.segment_steps * self.batch_size))

    def capped(self, n: int) -> LMConfig:
        """The same run cut to at most ``n`` whole segments' characters (validated at its end, and at
        every ``eval_every`` before if that comes sooner): a dry run or a warm-up."""
        chars = min(self.train_chars, n * self.segment_steps * self.batch_size)
        return dataclasses.replace(self, train_chars=chars, eval_every=min(self.eval_every, chars))


@dataclass
class LMRun:
    config: LMConfig
    history: list[dict] = field(default_factory=list)  # one entry per validation point
    best_valid_bpc: float = float("nan")
    best_chars: int = 0  # training characters at the best validation point
    test_bpc: float = float("nan")  # of the checkpoint with the best validation BPC
    seconds: list[float] = field(default_factory=list)  # training wall-clock at each validation point
    # (single thread, evaluation excluded); never written to result files

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "history": self.history, "best_valid_bpc": self.best_valid_bpc,
                "best_chars": self.best_chars, "test_bpc": self.test_bpc}


def train_lm(
    cfg: LMConfig, corpus: TextCorpus, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None, checkpoint: Checkpoint | None = None,
) -> LMRun:
    """Train one character-level LSTM for ``cfg.train_chars`` characters; early stopping on the
    validation BPC, test BPC of the best checkpoint.

    device: where it trains (None: the CPU); the texts are moved there. checkpoint: save the run's
    whole state when due (the carried state and the synthetic-gradient prediction waiting at the
    segment's open end included) and resume from the saved state if there is one (the final run is
    the same either way). The segments' losses stay on the device until the next validation point;
    raises ``DivergenceError`` there if one of them was NaN or infinite, naming the characters seen
    before that segment."""
    cfg.validate()
    device = torch.device(device or "cpu")
    torch.manual_seed(cfg.seed)
    v = corpus.n_vocab
    core, interface, optimizer = build_recurrent(
        v, v, cfg.method, cfg.hidden, cfg.lr, cfg.synth_lr, cfg.synth_hidden_layers, cfg.synth_hidden, cfg.grad_scale,
        cfg.squash_cell,
    )  # built on the CPU from the seed, then moved
    core.to(device)
    interface.to(device)
    streams = batchify(corpus.train, cfg.batch_size).to(device)  # (L, B)
    if cfg.eval_streams * 2 > min(corpus.valid.numel(), corpus.test.numel()):
        raise ValueError(f"eval_streams={cfg.eval_streams} is too many for a validation text of {corpus.valid.numel()} "
                         f"characters")
    segment = cfg.segment_steps
    aux_weight = cfg.aux_weight if cfg.method == "dni_aux" else 0.0
    run = LMRun(config=cfg)
    best_state: dict[str, torch.Tensor] | None = None
    core.train()
    interface.train()
    pos, state, seen, next_eval, k = 0, None, 0, cfg.eval_every, 0
    counted, clock = 0, 0.0
    losses = SeriesMeter()  # each segment's chunk losses, tagged with the characters seen before it
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        core.load_state_dict(saved["core"])
        optimizer.load_state_dict(saved["optimizer"])
        interface.load_checkpoint_state(saved["interface"])
        set_rng_state(saved["rng"])
        pos, seen, next_eval, k, counted, clock = (saved[key] for key in ("pos", "seen", "next_eval", "step", "counted",
                                                                        "clock"))
        state = None if saved["state"] is None else saved["state"].to(device)
        best_state = saved["best_state"]
        run.history, run.seconds = saved["history"], saved["seconds"]
        run.best_valid_bpc, run.best_chars = saved["best_valid_bpc"], saved["best_chars"]
        losses.load_state_dict(saved["losses"], device)
    bar = tqdm(total=cfg.train_chars, initial=seen, desc=desc or cfg.method, disable=not progress, mininterval=5,
               leave=False, unit="char", unit_scale=True)
    span = timer(device)  # training time is measured between validation points (no per-segment synchronisation)
    while seen < cfg.train_chars:
        k += 1
        if pos >= streams.shape[0] - 1:  # a new epoch: the streams start again from a zero state
            pos, state = 0, None
            interface.discard()
        steps = min(segment, streams.shape[0] - 1 - pos)
        last = pos + steps >= streams.shape[0] - 1
        stats = run_episode(core, char_episode(streams, pos, steps, v), cfg.truncation, interface, optimizer,
                            aux_weight=aux_weight, loss_fn=char_loss, state=state, open_end=not last)
        losses.add(stats.losses, seen)
        state = None if last else stats.state
        pos += steps
        seen += steps * cfg.batch_size
        counted += steps * cfg.batch_size
        bar.update(steps * cfg.batch_size)
        if seen >= next_eval or seen >= cfg.train_chars:
            clock += timer(device) - span
            nats = 0.0
            for values, before in losses.flush():
                loss = summarize_episode(values, (len(values), 0, 0), cfg.batch_size)[0]  # per stream
                if not math.isfinite(loss):
                    raise DivergenceError(
                        f"method={cfg.method!r}, T={cfg.truncation}: the training loss became {loss} after {before} "
                        f"characters; try a smaller lr (now {cfg.lr}) or grad_scale (now {cfg.grad_scale})"
                    )
                nats += loss * cfg.batch_size
            next_eval += cfg.eval_every
            valid = evaluate_bpc(core, corpus.valid, v, cfg.eval_streams)
            run.history.append({"chars": seen, "train_bpc": bits_per_character(nats, counted), "valid_bpc": valid})
            run.seconds.append(clock)
            counted = 0
            if not valid >= run.best_valid_bpc:  # the first point, or better
                run.best_valid_bpc, run.best_chars = valid, seen
                best_state = copy.deepcopy(core.state_dict())
            bar.set_postfix(valid_bpc=f"{valid:.3f}")
            span = timer(device)
        if checkpoint is not None and seen < cfg.train_chars and checkpoint.due(k):
            checkpoint.save({
                "step": k, "core": core.state_dict(), "optimizer": optimizer.state_dict(),
                "interface": interface.checkpoint_state(), "rng": rng_state(), "pos": pos, "seen": seen,
                "next_eval": next_eval, "counted": counted, "clock": clock + timer(device) - span, "state": state,
                "best_state": best_state, "history": run.history, "seconds": run.seconds,
                "best_valid_bpc": run.best_valid_bpc, "best_chars": run.best_chars, "losses": losses.state_dict(),
            })
            clock, span = clock + timer(device) - span, timer(device)
    bar.close()
    core.load_state_dict(best_state)
    run.test_bpc = evaluate_bpc(core, corpus.test, v, cfg.eval_streams)
    return run
