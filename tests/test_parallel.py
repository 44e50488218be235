"""Decoupled training across processes (notebook 08): the gradient plumbing between stages, the
bookkeeping of late targets, the baselines, the failure path and the cost model."""

import multiprocessing
import tempfile
import time
from pathlib import Path

import pytest
import torch

from dni_utils.data import load_dataset
from dni_utils.parallel import (
    PARALLEL_PROFILES, ParallelConfig, StageFailedError, best_speedup, block_flops, stage_flops, stage_split,
    train_parallel,
)

TINY = dict(depth=4, width=32, batch_size=16, steps=6, snapshots=2, timeline_start=1, timeline_steps=2)


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-5k")


def _run(data, **kw):
    return train_parallel(ParallelConfig(**{**TINY, **kw}), "mnist-5k", data, timeout=120)


SGD = dict(optimizer="sgd", lr=0.01, steps=5)


@pytest.fixture(scope="module")
def bprop(data):
    return _run(data, method="bprop", **SGD)


def test_with_an_exact_synthesizer_two_stage_dni_trains_exactly_as_backprop(data, bprop):
    # SGD shows a gradient's scale (Adam's first steps would not); the synthesizer is exact at
    # every batch, so each stage's update equals backprop's, and each target that comes back from
    # stage 1 equals the prediction made for that batch (ordering and content of the messages).
    dni = _run(data, method="cdni", synth_factory="synth_stubs:shadow", staleness=2, **SGD)
    assert len(dni.split) == 2
    params = [k for k in bprop.final_state if "running" not in k and "num_batches" not in k]
    for k in params:
        torch.testing.assert_close(dni.final_state[k], bprop.final_state[k], rtol=1e-4, atol=1e-5, msg=k)
    moved = max((bprop.final_state[k] - v).abs().max().item() for k, v in _initial(data).items() if k in params)
    assert moved > 1e-3, "the runs must have trained"
    assert len(dni.synth_losses) == 5 and max(dni.synth_losses) < 1e-8
    assert dni.test_error == pytest.approx(bprop.test_error)


def _initial(data):
    from dni_utils.models import make_net

    torch.manual_seed(0)
    return make_net("fcn", data.shape, TINY["depth"], TINY["width"], data.n_classes).state_dict()


def test_a_wrong_synthesizer_is_not_backprop(data, bprop):
    # the check above can fail: the default (zero-initialised, learned) synthesizer differs
    dni = _run(data, method="cdni", **SGD)
    first = next(k for k in bprop.final_state if k.startswith("blocks.0.1.weight"))
    assert not torch.allclose(dni.final_state[first], bprop.final_state[first], atol=1e-5)


def test_three_stages_count_every_update_and_every_late_target(data):
    run = _run(data, method="dni", stages=3, depth=5, steps=7, staleness=2)
    assert len(run.split) == 3 and sum(run.split) == 5
    assert run.updates == [7, 7, 7]  # every stage steps once per batch, never waiting for a backward pass
    assert run.synth_updates == [7, 7, 0]  # every prediction got its target; the last stage has none
    # batches 0..4 are applied 2 batches late; the last two at the end of training (2 and 1 late)
    assert run.staleness == {1: 1, 2: 6}
    assert run.examples == [4 * 16, 7 * 16] and len(run.test_error) == 2


def test_targets_applied_as_they_arrive_are_all_applied(data):
    run = _run(data, method="dni", staleness=0, steps=8)
    assert run.synth_updates[0] == 8 and sum(run.staleness.values()) == 8


def test_same_seed_same_numbers(data):
    a, b = (_run(data, method="dni").to_dict() for _ in range(2))
    assert a == b
    assert _run(data, method="dni", seed=1).to_dict() != a


@pytest.mark.parametrize("method", ["gpipe", "1f1b"])
def test_the_pipeline_schedules_train_on_the_same_examples(data, method):
    run = _run(data, method=method, steps=6, in_flight=2)
    assert run.updates == [3, 3]  # 2 micro-batches of 16 per optimiser step
    assert run.examples == [32, 96]  # every method's snapshots fall on multiples of in_flight batches
    assert _run(data, method="dni", steps=6, in_flight=2).examples == run.examples
    assert all(kind == "schedule step" for kind in {e[1] for e in run.events[0]})


def test_a_stage_that_raises_stops_the_others_at_once(data):
    before = set(Path(tempfile.gettempdir()).glob("dni-parallel-*"))
    start = time.monotonic()
    # stage 0 would wait for stage 1's messages until comm_timeout: it must be stopped long before
    with pytest.raises(StageFailedError, match=r"stage 1 of 2 raised(.|\n)*stage 1 raised at step 3"):
        _run(data, method="dni", steps=50, fail_at=(1, 3), comm_timeout=600.0)
    assert time.monotonic() - start < 60
    assert multiprocessing.active_children() == []
    assert set(Path(tempfile.gettempdir()).glob("dni-parallel-*")) == before


def test_a_run_past_its_timeout_is_stopped(data):
    with pytest.raises(StageFailedError, match="timeout=0.5"):
        train_parallel(ParallelConfig(**{**TINY, "method": "dni", "steps": 10_000}), "mnist-5k", data, timeout=0.5)
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(method="hogwild"), "method='hogwild' is unknown"),
        (dict(optimizer="rmsprop"), "optimizer='rmsprop' is unknown"),
        (dict(stages=1), "stages=1 is invalid for method='dni'"),
        (dict(stages=5, depth=4), "stages=5 is invalid"),
        (dict(method="gpipe", steps=5, in_flight=2), "steps=5 is invalid for gpipe"),
        (dict(width=0), "width=0 is invalid"),
        (dict(staleness=-1), "staleness=-1 is invalid"),
        (dict(lr=0.0), "lr=0.0 is invalid"),
    ],
)
def test_bad_configs_are_refused_with_the_parameter_named(kw, match):
    with pytest.raises(ValueError, match=match):
        ParallelConfig(**{**TINY, **kw}).validate()


def test_the_cost_model_by_hand():
    cfg = ParallelConfig(method="bprop", depth=2, width=4)
    # block 0: 784 -> 4 (forward 2io, backward only the weights' 2io); block 1: 4 -> 4 (2io + 4io); head 4 -> 10
    assert block_flops(cfg) == [4 * 784 * 4, 6 * 16, 6 * 40]
    assert best_speedup(cfg) == 1.0
    dni = ParallelConfig(method="dni", depth=2, width=4, stages=2)
    assert stage_split(dni) == [1, 1]
    assert stage_flops(dni, [1, 1]) == [4 * 784 * 4 + 6 * 4 * 4, 6 * 16 + 6 * 40]
    total = sum(block_flops(dni))
    assert best_speedup(dni) == pytest.approx(total / max(stage_flops(dni, [1, 1])))
    gpipe = ParallelConfig(method="gpipe", depth=2, width=4, stages=2, in_flight=2)
    assert best_speedup(gpipe) == pytest.approx(2 * total / (3 * max(stage_flops(gpipe, [1, 1]))))


def test_the_split_balances_the_busiest_stage():
    cfg = ParallelConfig(method="dni", depth=8, width=512, stages=2)
    split = stage_split(cfg)
    worst = max(stage_flops(cfg, split))
    for n in range(1, 8):
        assert worst <= max(stage_flops(cfg, [n, 8 - n]))


@pytest.mark.parametrize("profile", sorted(PARALLEL_PROFILES))
def test_every_profile_builds_valid_configs(profile):
    settings = PARALLEL_PROFILES[profile]
    fields = {k: v for k, v in settings.items() if k in ParallelConfig.__dataclass_fields__}
    for method in settings["methods"]:
        ParallelConfig(method=method, **fields).validate()


def test_torchrun_runs_the_same_stages_to_the_same_numbers(tmp_path):
    import os
    import subprocess
    import sys

    from dni_utils.parallel import assemble

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # torchrun's own notice about OMP_NUM_THREADS
    subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "dni_utils.parallel", "--method", "dni",
                    "--profile", "smoke", "--out", str(tmp_path)], check=True, env=env, timeout=300,
                   capture_output=True)
    cfg = ParallelConfig(**torch.load(tmp_path / "config.pt"))
    stages = [torch.load(tmp_path / f"stage{r}.pt", weights_only=False) for r in range(2)]
    data = load_dataset(PARALLEL_PROFILES["smoke"]["dataset"])
    spawned = train_parallel(cfg, "mnist-5k", data, timeout=120)
    assert assemble(cfg, stages, data).to_dict() == spawned.to_dict()
