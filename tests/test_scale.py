"""Paper scale: the device parameter, no per-step host reads, checkpoint and resume, the step cap
and the cost estimate (runner.train_many), on the feed-forward trainer."""

import json
import re
from pathlib import Path

import nbformat
import pytest
import torch

from dni_utils.tools.checkpoint import Checkpoint, Meter, first_non_finite, run_key, source_hash
from dni_utils.tools.device import device_name, resolve_device
from dni_utils.tools.executed import clean_notebook, unfit_fields
from dni_utils.tools.results import environment
from dni_utils.tools.runner import RunOptions, capped, run_options, train_many
from dni_utils.trainers.feedforward import FFConfig, FFTrainer, train_ff


def _cfg(method="dni", **kw):
    base = dict(method=method, depth=2, width=16, steps=12, batch_size=32, lr=1e-3, synth_hidden_layers=1,
                synth_hidden=16, log_every=4, diag_batch=32, seed=0)
    return FFConfig(**{**base, **kw})


# ---- device -------------------------------------------------------------------------------------


def test_auto_is_the_cpu_without_cuda_and_the_result_records_it():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    assert environment(resolve_device("auto"))["device"] == "cpu" == device_name(torch.device("cpu"))
    assert environment("cpu")["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize(
    "device, match",
    [("gpu", r"device='gpu' is unknown: expected one of \('auto', 'cpu', 'cuda', 'cuda:N'\)"),
     ("tpu", "device='tpu' is unknown"), ("", "device='' is invalid"), ("meta", "device='meta' is not supported")],
)
def test_unknown_devices_are_clear_errors(device, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_a_clear_error(device):
    with pytest.raises(ValueError, match=rf"device='{device}' was asked for, but this machine has no CUDA device"):
        RunOptions(device=device)


# ---- per-step values stay on the device -------------------------------------------------------------


def test_a_meter_reads_back_exactly_what_item_gives():
    values = [torch.tensor(v, dtype=torch.float32) for v in (0.1, 1 / 3, 2.5e-8, float("nan"))]
    meter = Meter()
    for step, v in enumerate(values, 1):
        meter.add(v, step)
    meter.add(0.25, 5)
    read, steps = meter.flush()
    assert read[:3] == [v.item() for v in values[:3]] and read[3] != read[3] and read[4] == 0.25
    assert steps == [1, 2, 3, 4, 5] and len(meter) == 0
    assert first_non_finite(read, steps) == (4, read[3]) and first_non_finite([1.0, 2.0], [1, 2]) is None


def test_the_divergence_error_comes_at_the_next_log_point_and_names_the_step(tiny_data, monkeypatch):
    """Batches turn to NaN from the 6th on: the run stops at the log point of step 8, naming step 6."""
    from dni_utils.trainers import feedforward as ff

    original, calls = ff.BatchSampler.next, []

    def next_batch(self):
        calls.append(1)
        x, y = original(self)
        return (x * float("nan"), y) if len(calls) >= 6 else (x, y)

    monkeypatch.setattr(ff.BatchSampler, "next", next_batch)
    with pytest.raises(ff.DivergenceError, match=r"method='dni', depth=2: the training loss became nan at step 6;"):
        train_ff(_cfg("dni", log_every=4), tiny_data, progress=False)
    assert len(calls) == 8  # it trained on until the log point


# ---- checkpoint and resume ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["bprop", "dni", "cdni"])
def test_an_interrupted_feed_forward_run_resumes_to_the_same_result(method, tiny_data, resumes_exactly):
    # Saved after step 5 (between the log points at 4 and 8), killed there, resumed.
    resumes_exactly(train_ff, _cfg(method, lr_milestones=(0.5,)), tiny_data, every=5)


def test_resuming_with_asynchronous_updates_keeps_the_availability_draws(tiny_data, resumes_exactly):
    plain, _ = resumes_exactly(train_ff, _cfg("dni", p_update=0.5), tiny_data, every=3, stop_after=2)
    assert plain.updates != [12, 12]  # some layers did skip steps


def test_checkpoint_keys_follow_the_config_and_the_code(tiny_data):
    a, b = _cfg("dni"), _cfg("dni", seed=1)
    assert run_key(train_ff, a, None) == run_key(train_ff, _cfg("dni"), None) != run_key(train_ff, b, None)
    assert run_key(train_ff, a, {"dataset": "x"}) != run_key(train_ff, a, {"dataset": "y"})
    assert re.fullmatch(r"ffconfig-[0-9a-f]{20}", run_key(train_ff, a, None)) and len(source_hash()) == 64


def test_a_checkpoint_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    ckpt = Checkpoint(tmp_path, "k", every_steps=2, every_seconds=0)
    assert not ckpt.due(1) and ckpt.due(2)
    ckpt.save({"step": 2})

    def broken_save(obj, f, *a, **kw):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save({"step": 4})
    monkeypatch.undo()
    assert ckpt.load() == {"step": 2} and sorted(p.name for p in tmp_path.iterdir()) == ["k.pt"]


def test_finished_runs_are_loaded_not_trained_again(tiny_data, tmp_path, capsys, monkeypatch):
    options = RunOptions(device="cpu", checkpoint_dir=str(tmp_path), estimate=False)
    cfgs = [_cfg("dni"), _cfg("bprop")]
    first = train_many(cfgs, tiny_data, progress=False, options=options)
    assert len(list(tmp_path.glob("*.done.pt"))) == 2 and not list(tmp_path.glob("*[!e].pt"))

    def fails(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(FFTrainer, "step", fails)
        again = train_many(cfgs, tiny_data, progress=False, options=options)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in first]
    out = capsys.readouterr().out
    assert "0 runs to train" in out
    # and an executed copy that shows it is no record of a run (python -m dni_utils.tools.executed --check)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=out)]
    assert any("runs loaded from a checkpoint instead of trained" in line for line in unfit_fields(nb)), out
    # A changed setting is another run: trained, not loaded.
    train_many([_cfg("dni", lr=2e-3)], tiny_data, progress=False, options=options)
    assert len(list(tmp_path.glob("*.done.pt"))) == 3


def test_grid_results_are_the_same_with_or_without_checkpoints(tiny_data, tmp_path):
    cfgs = [_cfg("cdni"), _cfg("dni", seed=1)]
    plain = train_many(cfgs, tiny_data, progress=False, options=RunOptions(device="cpu", estimate=False))
    saved = train_many(cfgs, tiny_data, progress=False, workers=2,
                       options=RunOptions(device="cpu", estimate=False, checkpoint_dir=str(tmp_path), checkpoint_every=3))
    assert json.dumps([r.to_dict() for r in plain]) == json.dumps([r.to_dict() for r in saved])


def test_notebook_checkpoint_folders_follow_the_profile():
    assert run_options("paper").checkpoint_dir == "../checkpoints"
    assert run_options("cpu").checkpoint_dir is None and run_options("smoke").checkpoint_dir is None
    assert run_options("paper", max_steps=2).checkpoint_dir is None  # a dry run keeps nothing
    assert run_options("cpu", checkpoint_dir="/x").checkpoint_dir == "/x"
    assert run_options("paper", checkpoint_dir="none").checkpoint_dir is None


@pytest.mark.parametrize(
    "kw, match",
    [(dict(max_steps=-1), r"max_steps=-1 is invalid: expected an integer >= 0 \(0 = no cap\)"),
     (dict(checkpoint_every=1.5), "checkpoint_every=1.5 is invalid"),
     (dict(warmup_steps=0), "warmup_steps=0 is invalid"),
     (dict(checkpoint_seconds=-1), "checkpoint_seconds=-1 is invalid")],
)
def test_bad_run_options_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        RunOptions(device="cpu", **kw)


# ---- step cap and cost estimate -----------------------------------------------------------------


def test_max_steps_caps_every_run_and_its_log_interval(tiny_data):
    cfgs = capped([_cfg("dni", steps=12, log_every=4), _cfg("dni", steps=2, log_every=1)], 3)
    assert [(c.steps, c.log_every) for c in cfgs] == [(3, 3), (2, 1)]
    runs = train_many([_cfg("cdni")], tiny_data, progress=False, options=RunOptions(device="cpu", max_steps=3, estimate=False))
    assert runs[0].config.steps == 3 and runs[0].updates == [3, 3] and [h["step"] for h in runs[0].history] == [3]


def test_the_estimate_is_printed_before_the_runs_and_cleaned_from_executed_copies(tiny_data, capsys):
    train_many([_cfg("dni"), _cfg("dni", seed=1), _cfg("bprop")], tiny_data, progress=False,
               options=RunOptions(device="cpu", max_steps=6, warmup_steps=2))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "runs: 3 runs to train, 18 training steps in all, on cpu with 1 process; every run capped at 6 steps"
    assert re.fullmatch(r"wall-clock: estimated for the 3 runs, from a 2-step warm-up of each configuration on cpu, "
                        r"in \d+ s", out[1]), out[1]
    assert out[2].startswith("wall-clock: estimated for the same 3 runs uncapped (36 training steps in all)")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(out) + "\n")]
    text = clean_notebook(nb).cells[0].outputs[0].text
    assert not re.search(r"in \d+ s", text) and "estimated for the 3 runs" in text


def test_the_code_hash_of_a_checkpoint_covers_every_subpackage(tmp_path):
    """A checkpoint of a run trained by older code must not be found: the key hashes every module of
    the package, the trainers' and the mechanism's as much as the tools' own."""
    from dni_utils.tools.checkpoint import PACKAGE

    (tmp_path / "trainers").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "checkpoint.py").write_text("# tools\n")
    trainer = tmp_path / "trainers" / "recurrent.py"
    trainer.write_text("LR = 1\n")
    before = source_hash(tmp_path)
    trainer.write_text("LR = 2\n")
    source_hash.cache_clear()  # (the package's hash is computed once a process: its files do not change under it)
    changed = source_hash(tmp_path)
    assert changed != before
    trainer.rename(tmp_path / "trainers" / "other.py")  # the same bytes under another name: other code
    source_hash.cache_clear()
    assert source_hash(tmp_path) not in (before, changed, source_hash(tmp_path / "tools"))
    assert (PACKAGE / "trainers" / "recurrent.py").exists() and (PACKAGE / "mechanism" / "interfaces.py").exists()
    assert source_hash() == source_hash(PACKAGE)
