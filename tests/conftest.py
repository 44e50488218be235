import math

import pytest
import torch

from dni_utils.data.images import CIFAR10_CLASSES, Dataset


@pytest.fixture
def tiny_data() -> Dataset:
    """A generated 4-class problem of 8x8 images: learnable, offline, instant."""
    gen = torch.Generator().manual_seed(0)
    protos = torch.rand(4, 1, 8, 8, generator=gen)
    y = torch.randint(0, 4, (320,), generator=gen)
    x = (protos[y] + 0.3 * torch.rand(320, 1, 8, 8, generator=gen)).clamp(0, 1)
    return Dataset("tiny", x[:256], y[:256], x[256:], y[256:], n_classes=4, source="generated", synthetic=True)


def _smoke_params(nb, tmp, params: dict) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    return {"profile": "smoke", "progress": False, "results_dir": str(tmp / "results"),
            "figures_dir": str(tmp / "figures"), **params}


def _result_file(nb, tmp, params: dict):
    return tmp / "results" / f"{nb.stem}.{params['profile']}.json"


@pytest.fixture
def run_notebook():
    """Execute a notebook at the smoke profile (by default) into ``tmp``, in this process
    (``execute_in_process``: no kernel to start, the imports already made), with what it prints
    kept in ``tmp/printed.txt``; returns the path of the result file it should have written. Every
    notebook also runs through papermill and a kernel under nbval (``make test``), and
    ``run_notebook_in_a_kernel`` runs one as a user does."""
    import contextlib
    import io

    def run(nb, tmp, **params):
        params = _smoke_params(nb, tmp, params)
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                execute_in_process(nb, params)
        finally:
            (tmp / "printed.txt").write_text(printed.getvalue())
        return _result_file(nb, tmp, params)

    return run


@pytest.fixture
def run_notebook_in_a_kernel():
    """``run_notebook`` through papermill and a kernel, as ``make figures`` runs it: the executed
    notebook is ``tmp/out.ipynb``."""
    import papermill as pm

    def run(nb, tmp, **params):
        params = _smoke_params(nb, tmp, params)
        pm.execute_notebook(str(nb), str(tmp / "out.ipynb"), parameters=params, cwd=str(nb.parent),
                            progress_bar=False, log_output=False)
        return _result_file(nb, tmp, params)

    return run


@pytest.fixture
def same_results_for_any_workers(run_notebook):
    """Run a notebook with ``workers=2`` and ``workers=1`` (into ``tmp/a`` and ``tmp/b``); assert the
    result files are the same bytes but for the workers parameter itself, and return the first."""

    def check(nb, tmp, **params):
        a = run_notebook(nb, tmp / "a", workers=2, **params)
        b = run_notebook(nb, tmp / "b", workers=1, **params)
        assert a.read_text().replace('"workers": 2', '"workers": 1') == b.read_text()
        return a

    return check


def execute_in_process(nb, params: dict) -> None:
    """Execute a notebook's code cells in this process, in order, as papermill would in a kernel:
    the parameters cell, then ``params`` as assignments (papermill's injected cell), then the rest,
    with the notebook's folder as working directory. No kernel starts (a kernel costs seconds of
    start-up and imports: ``fails_cleanly`` runs dozens of notebooks that stop in their first
    cells). Matplotlib's settings, torch's random state and its thread count are restored after, and
    the notebook's figures closed."""
    import contextlib
    import os

    import matplotlib
    import matplotlib.pyplot as plt
    import nbformat
    from IPython.display import display

    cells = [c for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    injected = "\n".join(f"{name} = {value!r}" for name, value in params.items())
    sources = [c.source for c in cells[: first + 1]] + [injected] + [c.source for c in cells[first + 1 :]]
    namespace = {"__name__": "__main__", "display": display}
    threads, here = torch.get_num_threads(), os.getcwd()
    with contextlib.ExitStack() as stack:
        stack.enter_context(matplotlib.rc_context())
        stack.callback(plt.close, "all")  # a kernel's figures go with it
        stack.enter_context(torch.random.fork_rng())
        stack.callback(torch.set_num_threads, threads)
        stack.callback(os.chdir, here)
        os.chdir(nb.parent)
        for k, source in enumerate(sources):
            exec(compile(source, f"<{nb.name} cell {k}>", "exec"), namespace)


@pytest.fixture
def fails_cleanly():
    """Run a notebook that must fail (in this process: ``execute_in_process``): its error contains
    ``message`` and it leaves no result file and no figure behind. ``test_notebooks.py`` checks
    the same through papermill and a kernel once."""

    def check(nb, tmp, message: str, **params) -> None:
        params = {"profile": "smoke", "progress": False, "results_dir": str(tmp / "results"),
                  "figures_dir": str(tmp / "figures"), **params}
        with pytest.raises(Exception) as info:
            execute_in_process(nb, params)
        assert message in str(info.value), f"{message!r} not in {info.value!r}"
        assert not (tmp / "results").exists() and not (tmp / "figures").exists()

    return check


@pytest.fixture
def fails_cleanly_in_a_kernel(run_notebook_in_a_kernel):
    """``fails_cleanly`` through papermill and a kernel, as a user's run fails."""
    import papermill as pm

    def check(nb, tmp, message: str, **params) -> None:
        with pytest.raises(pm.PapermillExecutionError) as info:
            run_notebook_in_a_kernel(nb, tmp, **params)
        assert message in str(info.value)
        assert not (tmp / "results").exists() and not (tmp / "figures").exists()

    return check


@pytest.fixture
def jpeg_tree():
    """Write a tiny CIFAR-10 tree in ImageFolder layout under ``root/cifar-10-jpeg``: class c's
    images are a flat grey of brightness c * 20 (so a label can be read back from its image)."""
    from PIL import Image

    def write(root, classes=CIFAR10_CLASSES, per_class=(2, 1), quality=75):
        for split, n in zip(("train", "test"), per_class):
            for c, name in enumerate(classes):
                folder = root / "cifar-10-jpeg" / split / name
                folder.mkdir(parents=True)
                for i in range(n):
                    Image.new("RGB", (32, 32), (c * 20,) * 3).save(folder / f"{i:04d}.jpg", quality=quality)
        return root

    return write


class Interrupted(Exception):
    """Stands for a killed kernel: raised right after a checkpoint was written."""


@pytest.fixture
def resumes_exactly(tmp_path, monkeypatch):
    """Check that a run interrupted after a checkpoint and resumed ends as an uninterrupted one.

    ``check(train, cfg, data, every)`` trains ``cfg`` three times with ``train(cfg, data,
    progress=False, device=..., checkpoint=...)``: once without checkpoints; once checkpointed every
    ``every`` steps and stopped (``Interrupted``) right after the ``stop_after``-th save; once more
    with a fresh ``Checkpoint`` of the same key, which resumes. Returns the uninterrupted run and
    the resumed one, after asserting that their ``to_dict()`` JSON is the same text.
    """
    import json

    from dni_utils.tools.checkpoint import Checkpoint, run_key
    from dni_utils.tools.device import resolve_device

    def check(train, cfg, data, every: int, stop_after: int = 1, device: str = "cpu"):
        dev = resolve_device(device)
        plain = train(cfg, data, progress=False, device=dev, checkpoint=None)
        key = run_key(train, cfg, None, dev)
        saves = []
        original = Checkpoint.save

        def save_then_die(self, state):
            original(self, state)
            saves.append(state)
            if len(saves) == stop_after:
                raise Interrupted

        monkeypatch.setattr(Checkpoint, "save", save_then_die)
        with pytest.raises(Interrupted):
            train(cfg, data, progress=False, device=dev, checkpoint=Checkpoint(tmp_path, key, every, 0))
        monkeypatch.setattr(Checkpoint, "save", original)
        ckpt = Checkpoint(tmp_path, key, every, 0)
        assert ckpt.load() is not None, "no checkpoint was written before the interruption"
        resumed = train(cfg, data, progress=False, device=dev, checkpoint=ckpt)
        text = lambda run: json.dumps(run.to_dict(), sort_keys=True)  # noqa: E731
        assert text(resumed) == text(plain)
        return plain, resumed

    return check


def assert_nested_close(a, b, what, rtol=1e-9, atol=1e-11):
    """``a`` and ``b`` (dicts, lists and numbers, nested) equal to float tolerance; NaN where both are NaN."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_nested_close(a[k], b[k], f"{what}.{k}", rtol, atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_nested_close(x, y, f"{what}[{i}]", rtol, atol)
    elif isinstance(a, float) and (math.isnan(a) or (isinstance(b, float) and math.isnan(b))):
        assert isinstance(b, float) and math.isnan(a) and math.isnan(b), f"{what}: {a} != {b}"
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=rtol, abs=atol), f"{what}: {a} != {b}"
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"
