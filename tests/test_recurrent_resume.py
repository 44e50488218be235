"""The recurrent trainers (Copy, the language model, two timescales) at paper scale: a run
interrupted after a checkpoint and resumed ends byte for byte as an uninterrupted one, a diverging
loss still stops the run with its message (now at the next log point at the latest), ``capped``
cuts a run to a number of training iterations, and the grids go through ``runner.train_many``."""

import pytest
import torch

from dni_utils.data.text import markov_text
from dni_utils.experiments.nb05_rnn_copy import run_grid as copy_grid
from dni_utils.tools.checkpoint import Checkpoint
from dni_utils.tools.device import use_device
from dni_utils.tools.runner import RunOptions
from dni_utils.trainers.language_model import LMConfig, train_lm
from dni_utils.trainers.recurrent import DivergenceError, RNNConfig, train_copy
from dni_utils.trainers.timescales import TimescaleConfig, TimescaleData, train_timescales

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _on(device: str) -> str:
    """``device``, with CUDA's reproducibility settings turned on for it (``device.use_device``)."""
    use_device(device)
    return device


def _copy_cfg(**kw) -> RNNConfig:
    return RNNConfig(**{**dict(method="dni_aux", task="repeat_copy", truncation=2, hidden=8, width=2, batch_size=4,
                               batches=12, window=2, threshold=0.5, log_every=5, synth_hidden=8), **kw})


def _corpus():
    return markov_text(n_symbols=4, n_train=2_000, n_eval=400, seed=1)


def _lm_cfg(**kw) -> LMConfig:
    # 21 steps x 4 streams = 84 characters per segment; an epoch of the 500-step streams is 24 segments
    # (the 24th 16 steps), so the 29 segments cross an epoch; validation after segments 10, 20 and 29.
    return LMConfig(**{**dict(method="dni", truncation=3, hidden=8, batch_size=4, train_chars=2_400, eval_every=800,
                              eval_streams=2, segment=20, lr=1e-2, synth_hidden=8, grad_scale=0.1), **kw})


def _digits() -> TimescaleData:
    g = torch.Generator().manual_seed(0)
    return TimescaleData(torch.rand(40, 1, 4, 4, generator=g), torch.randint(10, (40,), generator=g),
                         torch.rand(20, 1, 4, 4, generator=g), torch.randint(10, (20,), generator=g))


def _ts_cfg(**kw) -> TimescaleConfig:
    # 12 windows of T = 4 ticks; evaluations after windows 4, 8 and 12
    return TimescaleConfig(**{**dict(method="cdni", period=4, ticks=48, batch_size=4, encoder=8, hidden_a=4, message=2,
                                     hidden_b=4, eval_every=16, eval_streams=3, eval_windows=2, timeline_windows=2),
                              **kw})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["bptt", "dni_aux"])
def test_copy_resumes_exactly_between_log_points(resumes_exactly, method, device):
    # saves after batches 3 and 6: interrupted after 6, between the log points 5 and 10
    plain, _ = resumes_exactly(train_copy, _copy_cfg(method=method), None, every=3, stop_after=2, device=_on(device))
    assert [h["batch"] for h in plain.history] == [5, 10, 12]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["dni", "dni_aux"])
def test_lm_resumes_exactly_with_a_prediction_pending_across_segments(resumes_exactly, monkeypatch, method, device):
    saved = []
    original = Checkpoint.save

    def keep(self, state):
        saved.append(state["interface"]["pending"])
        original(self, state)

    # the fixture wraps Checkpoint.save again (the same monkeypatch undoes both); the list sees every
    # save of the interrupted run and of the resumed one
    monkeypatch.setattr(Checkpoint, "save", keep)
    plain, _ = resumes_exactly(train_lm, _lm_cfg(method=method), _corpus(), every=7, stop_after=2, device=_on(device))
    # interrupted after segment 14, between the validation points after segments 10 and 20, with the
    # synthetic gradient of the open segment end still waiting for its target
    assert len(saved[1]) == 1
    assert [h["chars"] for h in plain.history] == [840, 1680, 2416]  # segment 24 ends the epoch: 16 steps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["bptt", "dni_state", "cdni"])
def test_timescales_resume_exactly_between_evaluations(resumes_exactly, method, device):
    # saves after windows 3 and 6: interrupted after 6, between the evaluations after 4 and 8
    plain, _ = resumes_exactly(train_timescales, _ts_cfg(method=method), _digits(), every=3, stop_after=2,
                               device=_on(device))
    assert [h["tick"] for h in plain.history] == [16, 32, 48]


def _nan_after(monkeypatch, name: str, calls: int) -> list[int]:
    """Make ``torch.nn.functional.<name>`` (a task loss) return NaN from its ``calls``-th call on, as
    a diverged network would (Adam keeps an LSTM with a bounded loss gradient finite at any lr);
    returns the call counter."""
    import torch.nn.functional as F

    original, count = getattr(F, name), [0]

    def loss(*args, **kw):
        count[0] += 1
        out = original(*args, **kw)
        return out * float("nan") if count[0] > calls else out

    monkeypatch.setattr(F, name, loss)
    return count


def test_a_diverging_copy_run_stops_with_its_message(monkeypatch):
    _nan_after(monkeypatch, "binary_cross_entropy_with_logits", 6)  # chunks: batches of length 1 have 2 (T = 2)
    with pytest.raises(DivergenceError, match=r"^method='dni', T=2: the training loss became nan at batch 4; "
                                              r"try a smaller lr \(now 0.003\) or grad_scale \(now 0.1\)$"):
        train_copy(_copy_cfg(method="dni", task="copy"), progress=False)


def test_a_diverging_language_model_stops_with_its_message_at_the_next_validation_point(monkeypatch):
    # 7 chunks a segment, and one call for the validation after segment 10: NaN from segment 12 on
    count = _nan_after(monkeypatch, "cross_entropy", 7 * 11 + 1)
    with pytest.raises(DivergenceError, match=r"^method='dni', T=3: the training loss became nan after 924 "
                                              r"characters; try a smaller lr \(now 0.01\) or grad_scale \(now 0.1\)$"):
        train_lm(_lm_cfg(), _corpus(), progress=False)
    assert count[0] == 7 * 20 + 1  # raised at the validation point after segment 20, before validating


def test_a_diverging_two_timescale_run_stops_with_its_message_at_the_next_evaluation():
    # at this lr A's weights overflow in window 3; the evaluation after window 4 finds it
    with pytest.raises(DivergenceError, match=r"^method='cdni', T=4: a training loss became non-finite in window 3; "
                                              r"try a smaller lr \(now 1e\+30\) or synth_lr \(now 0.001\)$"):
        train_timescales(_ts_cfg(lr=1e30), _digits(), progress=False)


def test_capped_configs_run_at_most_that_many_iterations_and_stay_valid():
    copy = _copy_cfg().capped(7)
    assert copy.train_steps() == 7 and copy.validate() is copy and _copy_cfg().capped(99) == _copy_cfg()
    assert train_copy(copy, progress=False).history[-1]["batch"] == 7
    lm = _lm_cfg().capped(3)
    assert _lm_cfg().train_steps() == 29 and lm.train_steps() == 3 and lm.validate() is lm
    assert [h["chars"] for h in train_lm(lm, _corpus(), progress=False).history] == [3 * 84]
    ts = _ts_cfg(period=3, ticks=60, eval_every=30).capped(5)
    assert ts.train_steps() == 5 and (ts.ticks, ts.eval_every) == (15, 15) and ts.validate() is ts
    assert [h["tick"] for h in train_timescales(ts, _digits(), progress=False).history] == [15]


def test_copy_refuses_a_data_set_by_name():
    with pytest.raises(ValueError, match="data=TimescaleData is invalid: Copy generates its sequences"):
        train_copy(_copy_cfg(), _digits(), progress=False)


def test_the_copy_grid_goes_through_train_many_with_its_options(capsys):
    settings = dict(tasks=["copy"], truncations=[2], methods=["bptt", "dni"], hidden=8, width=2, batch_size=4,
                    batches=50, window=2, threshold=0.5, log_every=20, synth_hidden=8)
    runs = copy_grid(settings, [0], progress=False, options=RunOptions(device="cpu", max_steps=3, estimate=False))
    assert sorted(runs) == [("copy", 2, "bptt", 0), ("copy", 2, "dni", 0)]
    assert all(r.history[-1]["batch"] == 3 and r.config.batches == 3 for r in runs.values())
    assert "every run capped at 3 steps" in capsys.readouterr().out
