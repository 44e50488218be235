"""Complete unlock: synthetic inputs and gradients for every layer, composed at test time."""

import re

import pytest
import torch
import torch.nn.functional as F

from dni_utils.experiments.nb04_ff_complete_unlock import UNLOCK_PROFILES, UNLOCK_THREADS, claims, unlock_config
from dni_utils.experiments.profiles import PROFILES
from dni_utils.trainers.feedforward import DivergenceError
from dni_utils.trainers.unlock import UnlockConfig, UnlockTrainer, train_unlock


def _cfg(**kw):
    return UnlockConfig(**{**dict(depth=2, width=16, steps=40, batch_size=32, lr=1e-2, grad_synth_hidden=16,
                                  input_synth_hidden=32, log_every=20), **kw})


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def test_fresh_synthetic_inputs_are_exactly_zero(tiny_data):
    t = UnlockTrainer(_cfg(depth=3), tiny_data.shape, tiny_data.n_classes)
    t.train()
    x = tiny_data.x_train[:8]
    for iface in t.inputs:
        pred = iface.synthetic_input(x)
        assert pred.shape == (8, 16) and torch.equal(pred, torch.zeros_like(pred))


def test_first_step_regresses_onto_the_messages_that_crossed_the_edges(tiny_data):
    """Step 1, by hand. Every synthesizer starts at zero, so: the blocks receive a zero gradient and
    do not move; the output layer sees a zero input, logits = its bias b, and the gradient at its
    input is (softmax(b) - onehot(y)) W per example; block 0 sees the real x, so I_1's target is
    f_0(x); block 1 sees ĥ = 0, a constant batch that BatchNorm maps to 0, so I_2's target is 0."""
    t = UnlockTrainer(_cfg(), tiny_data.shape, tiny_data.n_classes)
    t.train()
    x, y = tiny_data.x_train[:32], tiny_data.y_train[:32]
    blocks, head = _snapshot(t.net.blocks), _snapshot(t.net.head)
    with torch.no_grad():
        h0 = t.net.blocks[0](x)  # (B, W), batch statistics as in the step
        w, b = t.net.head.weight.clone(), t.net.head.bias.clone()
    t.step(x, y)
    assert all(torch.equal(a, c) for a, c in zip(blocks, _snapshot(t.net.blocks)))
    assert not all(torch.equal(a, c) for a, c in zip(head, _snapshot(t.net.head)))
    delta = (F.softmax(b, 0).expand(32, -1) - F.one_hot(y, tiny_data.n_classes).float()) @ w  # (B, W)
    assert t.grads[-1].last_loss == pytest.approx(delta.pow(2).sum().item() / 32, rel=1e-5)
    assert t.grads[0].last_loss == pytest.approx(0.0, abs=1e-12)  # block 1 received δ̂ = 0: so did its input
    assert t.inputs[0].last_loss == pytest.approx(h0.pow(2).sum().item() / 32, rel=1e-5)
    assert t.inputs[1].last_loss == pytest.approx(0.0, abs=1e-6)  # up to rounding in BatchNorm
    assert all(i.pending == 0 for i in [*t.grads, *t.inputs])


def test_the_composed_network_is_the_plain_forward_pass(tiny_data):
    t = UnlockTrainer(_cfg(), tiny_data.shape, tiny_data.n_classes)
    t.train()
    for k in range(5):
        t.step(tiny_data.x_train[32 * k : 32 * (k + 1)], tiny_data.y_train[32 * k : 32 * (k + 1)])
    got = t.evaluate(tiny_data.x_test, tiny_data.y_test)
    assert t.net.training and t.inputs.training  # evaluate() leaves train mode on
    t.net.eval()
    with torch.no_grad():
        wrong = (t.net(tiny_data.x_test).argmax(1) != tiny_data.y_test).float().mean().item()
    assert got["test_error"] == pytest.approx(wrong)
    assert len(got["input_rel_error"]) == 2


def test_complete_unlock_learns_the_tiny_problem_and_counts_updates(tiny_data):
    run = train_unlock(_cfg(steps=150, log_every=50), tiny_data, progress=False)
    assert [h["step"] for h in run.history] == [50, 100, 150]
    assert run.updates == [150, 150, 150]
    assert run.grad_synth_updates == [150, 150] and run.input_synth_updates == [150, 150]
    assert run.test_error < 0.2
    assert run.history[-1]["input_rel_error"][0] < run.history[0]["input_rel_error"][0]


def test_same_seed_same_numbers(tiny_data):
    a = train_unlock(_cfg(steps=10, log_every=5), tiny_data, progress=False).to_dict()
    b = train_unlock(_cfg(steps=10, log_every=5), tiny_data, progress=False).to_dict()
    assert a == b


def test_a_nan_loss_is_a_clear_error(tiny_data):
    tiny_data.x_train[:] = float("nan")
    with pytest.raises(DivergenceError, match=r"complete unlock, depth=2: the training loss became nan at step 1"):
        train_unlock(_cfg(), tiny_data, progress=False)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(depth=0), "depth=0 is invalid"),
        (dict(width=2.5), "width=2.5 is invalid"),
        (dict(lr=0.0), "lr=0.0 is invalid"),
        (dict(input_synth_kind="conv"), "input_synth_kind='conv' is unknown: expected one of ('linear', 'mlp')"),
        (dict(lr_milestones=(0.5, 1.0)), "lr_milestones=(0.5, 1.0) is invalid"),
    ],
)
def test_bad_config_is_a_clear_error(kw, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        _cfg(**kw).validate()


def test_claims_are_judged_on_the_final_numbers(tiny_data):
    run = train_unlock(_cfg(steps=2, log_every=2), tiny_data, progress=False)
    run.history[-1].update(test_error=0.05, synthetic_test_error=0.04, input_rel_error=[0.1, 0.3])
    assert claims(run, 6.0, 2.0, 0.5) == {"unlock_learns": True, "layers_compose": True,
                                         "synthetic_inputs_match": True}
    assert claims(run, 4.0, 0.5, 0.2) == {"unlock_learns": False, "layers_compose": False,
                                         "synthetic_inputs_match": False}


def test_every_unlock_profile_has_the_same_settings_and_builds_a_config():
    assert set(UNLOCK_PROFILES) == set(PROFILES)
    assert len({frozenset(v) for v in UNLOCK_PROFILES.values()}) == 1
    for settings in UNLOCK_PROFILES.values():
        assert unlock_config(settings, seed=0).depth == settings["depth"]


def test_a_huge_learning_rate_is_a_clear_error_naming_the_step_it_diverged_at(tiny_data):
    # the losses are read at the log point (step 20), but the error names the step they first went bad
    with pytest.raises(DivergenceError, match=r"complete unlock, depth=2: the training loss became nan at step 5; "
                                              r"try a smaller lr \(now 10000000000\.0\)"):
        train_unlock(_cfg(lr=1e10), tiny_data, progress=False)


def test_capped_cuts_the_run_and_logs_at_its_end(tiny_data):
    cfg = _cfg(steps=40, log_every=20)
    assert cfg.train_steps() == 40 and cfg.capped(100) == cfg
    short = cfg.capped(7)
    assert short.train_steps() == 7 and short.depth == cfg.depth
    run = train_unlock(short, tiny_data, progress=False)
    assert [h["step"] for h in run.history] == [7] and run.updates == [7, 7, 7]
    with pytest.raises(ValueError, match=r"max_steps=0 is invalid: expected a positive integer"):
        cfg.capped(0)


@pytest.mark.parametrize("every, stop_after", [(3, 1), (20, 1), (7, 3)])
def test_an_interrupted_run_resumes_to_the_same_numbers(tiny_data, resumes_exactly, every, stop_after):
    # every 3: the saved losses wait for their log point; every 20: saved right after a log point;
    # every 7, third save: resumed in the second log interval
    plain, resumed = resumes_exactly(train_unlock, _cfg(steps=40, log_every=20), tiny_data, every, stop_after)
    assert [h["step"] for h in resumed.history] == [20, 40] and resumed.updates == [40, 40, 40]


def test_a_bad_device_is_a_clear_error(tiny_data):
    with pytest.raises(ValueError, match=r"device='tpu' is unknown: expected one of \('auto', 'cpu', 'cuda', 'cuda:N'\)"):
        train_unlock(_cfg(steps=2), tiny_data, progress=False, device="tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_the_run_learns_is_deterministic_and_resumes_exactly(tiny_data, resumes_exactly):
    cfg = _cfg(steps=150, log_every=50)
    a = train_unlock(cfg, tiny_data, progress=False, device="cuda")
    b = train_unlock(cfg, tiny_data, progress=False, device="cuda")
    assert a.to_dict() == b.to_dict() and a.test_error < 0.2
    resumes_exactly(train_unlock, _cfg(steps=40, log_every=20), tiny_data, 7, 3, device="cuda")


def test_notebook_04_trains_both_kinds_of_run_through_one_function(tiny_data):
    from dni_utils.trainers.feedforward import FFConfig, FFRun
    from dni_utils.experiments.nb04_ff_complete_unlock import train_unlock_or_ff
    from dni_utils.trainers.unlock import UnlockRun

    # the complete unlock trains with the process's default threads (the committed numbers were
    # made so), even inside runner.train_many, which sets one thread; the thread count changes the last bits
    assert torch.get_num_threads() == UNLOCK_THREADS
    reference = train_unlock(_cfg(steps=2, log_every=2), tiny_data, progress=False).to_dict()
    torch.set_num_threads(1)  # as runner.train_many sets it
    try:
        run = train_unlock_or_ff(_cfg(steps=2, log_every=2), tiny_data, progress=False)
        assert isinstance(run, UnlockRun) and torch.get_num_threads() == 1
        assert run.to_dict() == reference
        ff = FFConfig(method="dni", depth=2, width=16, steps=2, batch_size=32, log_every=2)
        assert isinstance(train_unlock_or_ff(ff, tiny_data, progress=False), FFRun)
        with pytest.raises(TypeError, match="expected an UnlockConfig or an FFConfig"):
            train_unlock_or_ff("unlock", tiny_data)
    finally:
        torch.set_num_threads(UNLOCK_THREADS)
