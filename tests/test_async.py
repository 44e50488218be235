"""Asynchronous layer updates: who updates when, for Bprop (chain or independent) and DNI."""

import re

import pytest
import torch

from dni_utils.experiments.nb03_ff_async_updates import ASYNC_PROFILES, check_p_updates, claims, paper_rows, run_sweep, updates_frame
from dni_utils.experiments.profiles import PROFILES
from dni_utils.trainers.feedforward import FFConfig, FFTrainer, train_ff


def _cfg(method="dni", **kw):
    return FFConfig(**{**dict(method=method, depth=3, width=16, steps=30, batch_size=32, lr=1e-2,
                              synth_hidden=16, log_every=10), **kw})


def _layers(t):
    return [*t.net.blocks, t.net.head]


def _moved(t, before):
    """For each layer (blocks, then the output layer): did any of its parameters change?"""
    return [any(not torch.equal(a, b) for a, b in zip(params, layer.parameters()))
            for params, layer in zip(before, _layers(t))]


def _snapshot(t):
    return [[p.detach().clone() for p in layer.parameters()] for layer in _layers(t)]


def _warm(t, data, steps=3):
    """A few synchronous steps, so that every synthetic gradient is non-zero (zero start)."""
    for k in range(steps):
        t.step(data.x_train[32 * k : 32 * (k + 1)], data.y_train[32 * k : 32 * (k + 1)])


@pytest.mark.parametrize(
    "method, rule, mask, expected",
    [
        # Block 1 unavailable: Bprop (chain) cannot reach blocks 0 and 1 through it; the rest update.
        ("bprop", "chain", [True, False, True, True], [False, False, True, True]),
        # The output layer unavailable: no Bprop gradient reaches anything.
        ("bprop", "chain", [True, True, True, False], [False, False, False, False]),
        ("bprop", "independent", [True, False, True, True], [True, False, True, True]),
        # DNI: every available layer updates from its synthetic gradient, whatever the others do.
        ("dni", "chain", [True, False, True, False], [True, False, True, False]),
        ("cdni", "chain", [False, True, False, True], [False, True, False, True]),
    ],
)
def test_only_the_available_layers_update(method, rule, mask, expected, tiny_data):
    t = FFTrainer(_cfg(method, p_update=0.5, bprop_async=rule), tiny_data.shape, tiny_data.n_classes)
    t.train()
    t.available = lambda: [True] * 4  # noqa: E731  (synchronous warm-up)
    _warm(t, tiny_data)
    synth_before = [i.n_updates for i in t.interfaces]
    before = _snapshot(t)
    t.available = lambda: list(mask)  # noqa: E731
    t.step(tiny_data.x_train[:32], tiny_data.y_train[:32])
    assert _moved(t, before) == expected
    assert t.updates == [3 + e for e in expected[:-1]] and t.head_updates == 3 + expected[-1]
    if method != "bprop":  # M_i updates with block i, and nothing is left pending
        assert [i.n_updates - n for i, n in zip(t.interfaces, synth_before)] == [int(m) for m in mask[:-1]]
        assert all(i.pending == 0 for i in t.interfaces)


def test_synchronous_training_draws_no_availability(tiny_data):
    t = FFTrainer(_cfg("dni"), tiny_data.shape, tiny_data.n_classes)
    t.train()
    state = t.availability.get_state()
    _warm(t, tiny_data)
    assert torch.equal(t.availability.get_state(), state)
    assert t.updates == [3, 3, 3] and t.head_updates == 3


def test_update_counts_follow_p_update(tiny_data):
    steps, p = 200, 0.5
    dni = train_ff(_cfg("dni", steps=steps, log_every=steps, p_update=p), tiny_data, progress=False)
    bp = train_ff(_cfg("bprop", steps=steps, log_every=steps, p_update=p), tiny_data, progress=False)
    # DNI: each layer on its own, Binomial(200, 0.5): 100 ± 7, so within 30 of it (4 sd).
    assert all(abs(n - p * steps) < 30 for n in [*dni.updates, dni.head_updates])
    assert dni.synth_updates == dni.updates
    # Bprop (chain): block i of 3 needs 4 - i available layers: 200 p^(4-i) = 12.5, 25, 50, then 100.
    counts = [*bp.updates, bp.head_updates]
    assert counts == sorted(counts)
    assert all(abs(n - steps * p ** (4 - i)) < 5 * (steps * p ** (4 - i)) ** 0.5 + 1 for i, n in enumerate(counts))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(p_update=0.0), "p_update=0.0 is invalid: expected a probability in (0, 1]"),
        (dict(p_update=1.5), "p_update=1.5 is invalid"),
        (dict(bprop_async="lazy"), "bprop_async='lazy' is unknown: expected one of ('chain', 'independent')"),
    ],
)
def test_bad_async_settings_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        _cfg(**kw).validate()
    with pytest.raises(ValueError, match="p_updates=.* is invalid"):
        check_p_updates([1.0, 0.0])


def test_sweep_records_updates_and_claims_are_judged_on_final_errors(tiny_data):
    settings = dict(ASYNC_PROFILES["smoke"], steps=6, log_every=3, width=8, synth_hidden=8, batch_size=32, depth=2)
    runs = run_sweep(settings, tiny_data, ["bprop", "dni", "cdni"], [0.2, 1.0], seeds=[0], progress=False)
    assert sorted(runs) == sorted((m, p, 0) for m in ("bprop", "dni", "cdni") for p in (1.0, 0.2))
    frame = updates_frame(runs)
    assert len(frame) == 6 * 3 and set(frame["layer"]) == {"1", "2", "out"}
    assert (frame[frame["p_update"] == 1.0]["updates"] == 6).all()
    errs = {("bprop", 1.0): 0.03, ("dni", 1.0): 0.04, ("cdni", 1.0): 0.03,
            ("bprop", 0.2): 0.30, ("dni", 0.2): 0.05, ("cdni", 0.2): 0.04}
    for (m, p, _), run in runs.items():
        run.test_error = errs[(m, p)]
    got = claims(runs, claim_p=0.2, cdni_p=0.2, max_error=6.0, breakdown_margin=10.0)
    assert got == {"dni_trains_at_p": True, "cdni_trains_at_low_p": True, "bprop_breaks_down": True}
    runs[("bprop", 0.2, 0)].test_error = 0.10
    assert claims(runs, 0.2, 0.2, 6.0, 10.0)["bprop_breaks_down"] is False
    assert claims(runs, 0.2, 0.2, 4.5, 10.0)["dni_trains_at_p"] is False


def test_sweep_over_seeds_judges_claims_on_means_beyond_the_spread(tiny_data):
    settings = dict(ASYNC_PROFILES["smoke"], steps=2, log_every=2, width=8, synth_hidden=8, batch_size=32, depth=2)
    runs = run_sweep(settings, tiny_data, ["bprop", "dni"], [0.2], seeds=[0, 1], progress=False)
    assert sorted(runs) == [("bprop", 0.2, 0), ("bprop", 0.2, 1), ("dni", 0.2, 0), ("dni", 0.2, 1)]
    errs = {("bprop", 0): 0.30, ("bprop", 1): 0.10, ("dni", 0): 0.05, ("dni", 1): 0.07}
    for (m, _, seed), run in runs.items():
        run.test_error = errs[(m, seed)]
    # Bprop's mean (20%) is 14 points above DNI's (6%), but its seeds differ by 20 (sd 14.1).
    got = claims(runs, claim_p=0.2, cdni_p=0.05, max_error=6.5, breakdown_margin=2.0)
    assert got == {"dni_trains_at_p": True, "bprop_breaks_down": False}
    runs[("bprop", 0.2, 1)].test_error = 0.28
    assert claims(runs, 0.2, 0.05, 6.5, 2.0)["bprop_breaks_down"] is True
    rows = paper_rows(runs, depth=2)
    assert [(r["method"], round(r["reproduced"], 2), r["n"]) for r in rows] == [("Bprop", 29.0, 2), ("DNI", 6.0, 2)]


def test_every_async_profile_has_the_same_settings():
    assert set(ASYNC_PROFILES) == set(PROFILES)
    assert len({frozenset(v) for v in ASYNC_PROFILES.values()}) == 1
