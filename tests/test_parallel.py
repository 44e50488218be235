"""Decoupled training across processes (notebook 08): the gradient plumbing between stages, the
bookkeeping of late targets, the baselines, the failure path and the cost model."""

import multiprocessing
import tempfile
import time
from pathlib import Path

import pytest
import torch

from dni_utils.data.images import load_dataset
from dni_utils.experiments.nb08_parallel_decoupled import PARALLEL_PROFILES
from dni_utils.trainers.parallel import (
    ParallelConfig, StageFailedError, best_speedup, block_flops, stage_flops, stage_split, train_parallel,
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
    from dni_utils.mechanism.models import make_net

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


@pytest.fixture(scope="module")
def dni(data):
    """A DNI run at TINY's sizes (6 batches, 2 in flight), trained once for the tests below."""
    return _run(data, method="dni")


def test_same_seed_same_numbers(data, dni):
    assert _run(data, method="dni").to_dict() == dni.to_dict()
    assert _run(data, method="dni", seed=1).to_dict() != dni.to_dict()


@pytest.mark.parametrize("method", ["gpipe", "1f1b"])
def test_the_pipeline_schedules_train_on_the_same_examples(data, dni, method):
    run = _run(data, method=method, steps=6, in_flight=2)
    assert run.updates == [3, 3]  # 2 micro-batches of 16 per optimiser step
    assert run.examples == [32, 96]  # every method's snapshots fall on multiples of in_flight batches
    assert (dni.config.steps, dni.config.in_flight) == (6, 2) and dni.examples == run.examples
    assert all(kind == "schedule step" for kind in {e[1] for e in run.events[0]})


def test_a_stage_that_raises_stops_the_others_at_once(data, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this run's rendezvous folder only, not others'
    start = time.monotonic()
    # stage 0 would wait for stage 1's messages until comm_timeout: it must be stopped long before
    with pytest.raises(StageFailedError, match=r"stage 1 of 2 raised(.|\n)*stage 1 raised at step 3"):
        _run(data, method="dni", steps=50, fail_at=(1, 3), comm_timeout=600.0)
    assert time.monotonic() - start < 60
    assert multiprocessing.active_children() == []
    assert list(tmp_path.glob("dni-parallel-*")) == []


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

    from dni_utils.trainers.parallel import assemble

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # torchrun's own notice about OMP_NUM_THREADS
    subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "dni_utils.trainers.parallel", "--method", "dni",
                    "--profile", "smoke", "--out", str(tmp_path)], check=True, env=env, timeout=300,
                   capture_output=True)
    cfg = ParallelConfig(**torch.load(tmp_path / "config.pt"))
    stages = [torch.load(tmp_path / f"stage{r}.pt", weights_only=False) for r in range(2)]
    data = load_dataset(PARALLEL_PROFILES["smoke"]["dataset"])
    spawned = train_parallel(cfg, "mnist-5k", data, timeout=120)
    assert assemble(cfg, stages, data).to_dict() == spawned.to_dict()


def test_capped_cuts_every_method_to_whole_pipeline_steps():
    cfg = ParallelConfig(**{**TINY, "method": "gpipe", "steps": 24, "snapshots": 6})
    assert cfg.train_steps() == 24
    assert cfg.capped(100) == cfg
    assert (cfg.capped(7).steps, cfg.capped(7).snapshots) == (6, 6)  # rounded down to in_flight=2
    assert (cfg.capped(2).steps, cfg.capped(2).snapshots) == (2, 2)
    assert cfg.capped(1).steps == 2  # never below one optimiser step of the pipelines
    for method in ("bprop", "dni", "1f1b"):
        ParallelConfig(**{**TINY, "method": method, "steps": 24}).capped(3).validate()
    with pytest.raises(ValueError, match=r"max_steps=0 is invalid: expected a positive integer"):
        cfg.capped(0)


def test_a_dry_run_caps_every_config_and_a_bad_cap_is_refused():
    from dni_utils.experiments.nb08_parallel_decoupled import configs

    settings = PARALLEL_PROFILES["smoke"]
    assert {c.steps for c in configs(settings, [0], max_steps=5).values()} == {4}
    assert {c.steps for c in configs(settings, [0]).values()} == {settings["steps"]}
    with pytest.raises(ValueError, match=r"max_steps=-1 is invalid: expected an integer >= 0 \(0 = no cap\)"):
        configs(settings, [0], max_steps=-1)


def test_a_huge_learning_rate_is_a_clear_error_naming_the_step(data):
    # the losses are read at the snapshots, but the error names the step they first went bad at
    with pytest.raises(StageFailedError, match=r"stage 0 of 1 raised(.|\n)*DivergenceError: method='bprop': the training "
                                               r"loss became nan at step 1; try a smaller lr \(now 10000000000\.0\)"):
        _run(data, method="bprop", lr=1e10, steps=6)


def test_an_unknown_device_is_refused_before_any_stage_starts(data):
    with pytest.raises(ValueError, match=r"device='tpu' is unknown: expected one of"):
        train_parallel(ParallelConfig(**{**TINY, "method": "dni"}), "mnist-5k", data, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' was asked for, but this machine has no CUDA device"):
            train_parallel(ParallelConfig(**{**TINY, "method": "dni"}), "mnist-5k", data, device="cuda")
    assert multiprocessing.active_children() == []


def test_stages_share_the_gpus_round_robin(monkeypatch):
    from dni_utils.trainers.parallel import stage_device

    assert stage_device("cpu", 3) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [stage_device("cuda:0", k) for k in range(3)] == [torch.device("cuda", i) for i in (0, 1, 0)]
    assert [stage_device("cuda:1", k) for k in range(2)] == [torch.device("cuda", i) for i in (1, 0)]


def test_the_estimate_times_one_short_run_per_method(data, monkeypatch):
    from dni_utils.experiments import nb08_parallel_decoupled as partable

    calls = []

    def fake(cfg, dataset, data=None, timeout=None, device="cpu"):
        calls.append((cfg.method, cfg.steps, cfg.snapshots, device))
        run = partable.ParallelRun(config=cfg, split=[cfg.depth])
        run.elapsed = 0.5 * cfg.steps  # half a second a batch, from the start barrier
        return run

    monkeypatch.setattr(partable, "train_parallel", fake)
    cfgs = {(m, s): ParallelConfig(**{**TINY, "method": m, "steps": 100, "seed": s})
            for m in ("bprop", "dni") for s in (0, 1)}
    costs = partable.method_costs(cfgs, "mnist-5k", data, "cpu", warmup_steps=10)
    assert calls == [("bprop", 10, 2, "cpu"), ("dni", 10, 2, "cpu")]  # seeds cost the same
    assert set(costs) == {"bprop", "dni"} and all(per_batch == 0.5 and fixed < 1 for fixed, per_batch in costs.values())
    out = partable.estimate_seconds(cfgs, costs)
    assert all(49.9 < v < 51 for v in out.values())  # 100 batches at 0.5 s, and the fixed cost (here ~0)

    # run_all: a run that its method's warm-up trained whole is that warm-up, not trained again
    for steps, trained in ((8, 4), (100, 6)):
        calls.clear()
        settings = {**PARALLEL_PROFILES["smoke"], "methods": ["bprop", "dni"], "steps": steps}
        runs = partable.run_all(settings, data, [0, 1], progress=False, warmup_steps=10)
        assert len(calls) == trained and [r.config.steps for r in runs.values()] == [steps] * 4
        assert [(m, n) for m, n, _, _ in calls[:2]] == [("bprop", min(steps, 10)), ("dni", min(steps, 10))]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", ["bprop", "dni", "cdni", "gpipe", "1f1b"])
def test_on_cuda_every_method_trains_and_is_deterministic(data, method):
    a = train_parallel(ParallelConfig(**{**TINY, "method": method, "steps": 6}), "mnist-5k", data, timeout=300,
                       device="cuda")
    b = train_parallel(ParallelConfig(**{**TINY, "method": method, "steps": 6}), "mnist-5k", data, timeout=300,
                       device="cuda")
    assert a.to_dict() == b.to_dict()
    assert a.examples[-1] == 6 * 16 and all(0 <= e <= 1 for e in a.test_error)
    assert all(v.device.type == "cpu" for v in a.final_state.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_an_exact_synthesizer_still_gives_backprop(data):
    kw = dict(timeout=300, device="cuda")
    bprop = train_parallel(ParallelConfig(**{**TINY, "method": "bprop", **SGD}), "mnist-5k", data, **kw)
    dni = train_parallel(ParallelConfig(**{**TINY, "method": "cdni", "synth_factory": "synth_stubs:shadow", **SGD}),
                         "mnist-5k", data, **kw)
    for k in (k for k in bprop.final_state if "running" not in k and "num_batches" not in k):
        torch.testing.assert_close(dni.final_state[k], bprop.final_state[k], rtol=1e-4, atol=1e-5, msg=k)
