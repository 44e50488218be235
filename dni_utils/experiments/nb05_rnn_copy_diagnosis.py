"""Why DNI lags on Copy (notebook 05): does the synthesizer keep up with the gradient it models?

One DNI run trains at a fixed length ``n`` and truncation ``T``. Every ``every`` batches, on a
fresh batch of ``probe`` sequences, the true gradient of the future loss with respect to the
state at each truncation boundary is computed by full BPTT with the current weights
(``true_boundary_gradients``), and two numbers are measured at each boundary, then averaged over
the boundaries:

- ``synthesizer cosine``: the cosine between the synthesizer's prediction δ̂(s) and the true
  gradient δ, over the whole (B, 2H) tensor;
- ``least-squares cosine``: the same cosine for the best *linear* map from the state to the
  gradient at that moment: an affine least-squares fit of δ on s on half of the probe sequences,
  scored on the other half. It says how much of the gradient a linear synthesizer could predict
  from the state if it were fitted now.

The gap between the two is what the synthesizer fails to learn while the core moves under it.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import torch
import torch.nn.functional as F

from dni_utils.data.tasks import Episode, bit_errors
from dni_utils.trainers.recurrent import RNNConfig, build, run_episode, sequence_loss, unroll


def true_boundary_gradients(core, episode: Episode, truncation: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(state, ∂L_future/∂state) at every truncation boundary of ``episode``, by full BPTT
    (the state is never cut; the core's ``.grad`` is left as it was)."""
    s = core.initial_state(episode.x.shape[1])  # (B, 2H)
    states, total = [], 0.0
    for start in range(0, episode.length, truncation):
        if start > 0:
            s.retain_grad()
            states.append(s)
        logits, s = unroll(core, episode.x[start : start + truncation], s)
        total = total + sequence_loss(logits, episode, start)
    grads = torch.autograd.grad(total, states) if states else []
    return [(st.detach(), g) for st, g in zip(states, grads)]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def least_squares_cosine(state: torch.Tensor, grad: torch.Tensor) -> float:
    """Held-out cosine of an affine least-squares map state -> gradient (fit on the first half
    of the batch, scored on the second)."""
    x = torch.cat([state, torch.ones(state.shape[0], 1)], dim=1)  # (B, 2H + 1)
    half = state.shape[0] // 2
    w = torch.linalg.lstsq(x[:half], grad[:half]).solution  # (2H + 1, 2H)
    return _cosine(x[half:] @ w, grad[half:])


def diagnose(cfg: RNNConfig, n: int, every: int, probe: int = 1024) -> pd.DataFrame:
    """Train ``cfg`` (a DNI config; its ``batches`` is the length of the run) at the fixed length
    ``n`` and measure the synthesizer against the true boundary gradients every ``every`` batches
    (see the module docstring). Returns one row per measurement. CPU only, one thread's worth."""
    if cfg.method == "bptt":
        raise ValueError("method='bptt' is invalid here: the diagnosis needs a synthesizer (dni or dni_aux)")
    if not isinstance(n, int) or n < 1 or not isinstance(every, int) or every < 1:
        raise ValueError(f"n={n!r}, every={every!r} are invalid: expected positive integers")
    if 2 * n + 1 <= cfg.truncation:
        raise ValueError(f"n={n} gives sequences of {2 * n + 1} steps, no truncation boundary at T={cfg.truncation}")
    task, core, interface, optimizer = build(dataclasses.replace(cfg, task="copy"))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    probe_gen = torch.Generator().manual_seed(cfg.seed + 2)
    aux_weight = cfg.aux_weight if cfg.method == "dni_aux" else 0.0
    rows, errors = [], []
    for b in range(1, cfg.batches + 1):
        episode = task.sample(n, cfg.batch_size, gen)
        stats = run_episode(core, episode, cfg.truncation, interface, optimizer, aux_weight=aux_weight)
        errors.append(bit_errors(stats.logits, episode).mean())
        if b % every == 0:
            pairs = true_boundary_gradients(core, task.sample(n, probe, probe_gen), cfg.truncation)
            with torch.no_grad():
                synth = [_cosine(interface.synthesizer(s), g) for s, g in pairs]
                lsq = [least_squares_cosine(s, g) for s, g in pairs]
            rows.append({"synth_lr": cfg.synth_lr, "batch": b, "synthesizer cosine": sum(synth) / len(synth),
                         "least-squares cosine": sum(lsq) / len(lsq),
                         "bits error per sequence": torch.stack(errors).mean().item()})
            errors = []
    return pd.DataFrame(rows)
