"""Executed copies: cleaning removes what changes from run to run and keeps the outputs."""

import json
import os
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dni_utils.tools.checkpoint import LOADED_FROM
from dni_utils.tools.executed import (
    INJECTED_ID, WALL_CLOCK_CELL_NOTE, WALL_CLOCK_NOTE, WIDGET_MIME, UnfitCopy, clean_file, clean_notebook, main,
    record_timing, relative_to_root, unfit_fields, volatile_fields,
)

ROOT = Path(__file__).resolve().parents[1]

# A notebook with what the real ones produce: a parameters cell, printed text, a tqdm bar that is
# left behind and one that is cleared, a figure drawn with the project's style and shown, a run time
# printed with ``wall_clock`` and a cell tagged ``wall-clock`` whose output is a time.
_CELLS = [
    new_markdown_cell("# Demo"),
    new_code_cell('steps: int = 3  # parameters', metadata={"tags": ["parameters"]}),
    new_code_cell(
        "import sys\nfrom tqdm import tqdm\n"
        "for _ in tqdm(range(steps), file=sys.stderr, mininterval=0): pass\n"
        "for _ in tqdm(range(steps), file=sys.stderr, mininterval=0, leave=False): pass\n"
        "print('trained', steps, 'steps')\nprint('warning: kept', file=sys.stderr)"
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\nfrom dni_utils.tools.plotting import set_style\nset_style()\n"
        "fig, ax = plt.subplots(figsize=(2, 1.5))\nax.plot([0, 1, 2], [2, 1, 3])\nplt.show()"
    ),
    new_code_cell(
        "import time\nfrom dni_utils.tools.executed import wall_clock\nprint('before')\n"
        "wall_clock(f'{steps} steps', time.perf_counter() - 12.3 * time.time() % 7)\nprint('after')"
    ),
    new_code_cell("time.perf_counter()", metadata={"tags": ["wall-clock"]}),
]


def _execute(tmp: Path) -> nbformat.NotebookNode:
    src, out = tmp / "demo.ipynb", tmp / "out" / "demo.ipynb"
    nb = new_notebook(cells=_CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, src)
    out.parent.mkdir(exist_ok=True)
    pm.execute_notebook(str(src), str(out), parameters={"steps": 4}, progress_bar=False, log_output=False, cwd=str(tmp))
    nb = nbformat.read(out, as_version=4)
    # What a notebook with tqdm.auto would add: a widget view and the widget state.
    nb.cells[3].outputs.append(nbformat.v4.new_output("display_data", data={WIDGET_MIME: {"model_id": "1f0e"}, "text/plain": "0%"}))
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The demo notebook executed twice by papermill, as ``make figures`` would: without the Agg
    backend that ``make test`` exports (the kernel then picks its inline one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MPLBACKEND", raising=False)
        return [_execute(tmp_path_factory.mktemp(name)) for name in ("a", "b")]


def test_an_executed_notebook_carries_volatile_fields_and_cleaning_removes_every_one(executed):
    raw = executed[0]
    found = "\n".join(volatile_fields(raw))
    for field in ("papermill", "execution", "widgets", "progress-bar residue", "widget view", "random id",
                  "a wall-clock time in stdout", "outputs of a cell tagged 'wall-clock'"):
        assert field in found, f"{field!r} not detected in:\n{found}"
    clean = clean_notebook(raw)
    assert volatile_fields(clean) == []
    assert unfit_fields(clean) == [], "papermill's paths go with its metadata"
    assert raw.metadata["papermill"]["duration"] is not None, "the input notebook must be left as it was"
    text = json.dumps(clean)
    for key in ("start_time", "end_time", "duration", "iopub", "input_path", "output_path", "exception", "widget"):
        assert key not in text, key


def test_cleaning_is_idempotent(executed):
    once = clean_notebook(executed[0])
    assert clean_notebook(once) == once


def test_cleaning_keeps_the_outputs_and_what_the_author_wrote(executed):
    clean = clean_notebook(executed[0])
    raw = executed[0]
    assert [c.source for c in clean.cells] == [c.source for c in raw.cells]
    assert clean.metadata["papermill"] == {"parameters": {"steps": 4}}
    assert clean.metadata["kernelspec"]["name"] == "python3"
    assert clean.cells[1].metadata == {"tags": ["parameters"]}
    injected = clean.cells[2]
    assert injected.metadata == {"tags": ["injected-parameters"]} and injected.id == INJECTED_ID
    assert [(o.name, o.text) for o in clean.cells[3].outputs] == [("stdout", "trained 4 steps\n"), ("stderr", "warning: kept\n")]
    assert [c.execution_count for c in clean.cells if c.cell_type == "code"] == [1, 2, 3, 4, 5, 6]
    images = [o for o in clean.cells[4].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, "the figure must be kept (the kernel's inline backend, not Agg)"
    assert re.fullmatch(r"before\nwall-clock: 4 steps in [0-9]+ s\nafter\n", raw.cells[5].outputs[0].text)
    assert clean.cells[5].outputs[0].text == f"before\nwall-clock: 4 steps {WALL_CLOCK_NOTE}\nafter\n"
    assert raw.cells[6].outputs[0].output_type == "execute_result"
    assert [o.text for o in clean.cells[6].outputs] == [f"wall-clock: {WALL_CLOCK_CELL_NOTE}\n"]


def test_two_runs_of_the_same_notebook_clean_to_the_same_bytes(executed):
    a, b = (nbformat.writes(clean_notebook(nb)) for nb in executed)
    assert a == b


def test_the_command_line_cleans_into_a_folder_and_checks(executed, tmp_path, capsys):
    src = tmp_path / "build" / "demo.ipynb"
    src.parent.mkdir()
    nbformat.write(executed[0], src)
    assert main(["--check", str(src)]) == 1
    assert "papermill.duration" in capsys.readouterr().err
    assert main([str(src), "--out-dir", str(tmp_path / "executed")]) == 0
    assert main(["--check", str(tmp_path / "executed" / "demo.ipynb")]) == 0
    assert volatile_fields(nbformat.read(src, as_version=4)), "the source must be left as it was"


def test_the_run_time_is_kept_in_the_timings_file_not_in_the_copy(executed, tmp_path):
    src = tmp_path / "build" / "02_demo.ipynb"
    src.parent.mkdir()
    nb = executed[0]
    nb.metadata.setdefault("papermill", {}).update(duration=754.2, end_time="2026-12-03T22:00:00")
    nbformat.write(nb, src)
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({"01_other": {"minutes": 3.0, "cores": 2, "date": "2026-12-01"}}))
    assert main([str(src), "--out-dir", str(tmp_path / "executed"), "--timings", str(timings)]) == 0
    table = json.loads(timings.read_text())
    assert table["02_demo"] == {"minutes": 12.6, "cores": os.cpu_count(), "date": "2026-12-03"}
    assert table["01_other"]["minutes"] == 3.0, "other notebooks' entries are kept"
    assert "duration" not in nbformat.read(tmp_path / "executed" / "02_demo.ipynb", as_version=4).metadata.get(
        "papermill", {})
    del nb.metadata["papermill"]["duration"]
    nbformat.write(nb, src)
    assert record_timing(src, timings) is None and json.loads(timings.read_text()) == table


# Committed copies known not to be records of a run, each with why; strict, so a fixed copy fails
# here until its entry goes.
_KNOWN_UNFIT: dict[str, str] = {}
_COMMITTED = sorted((ROOT / "executed").rglob("*.ipynb"))


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=_KNOWN_UNFIT[p.name])) if p.name in _KNOWN_UNFIT else p
     for p in _COMMITTED],
    ids=[str(p.relative_to(ROOT / "executed")) for p in _COMMITTED],
)
def test_committed_executed_copies_are_clean_records_of_real_runs(path):
    nb = nbformat.read(path, as_version=4)
    assert volatile_fields(nb) == [], f"{path.name}: run python -m dni_utils.tools.executed"
    assert unfit_fields(nb) == [], f"{path.name}: rerun the notebook (python -m dni_utils.tools.executed --check says why)"


_PAIRED = [p for p in _COMMITTED if (ROOT / "notebooks" / p.name).exists()]


@pytest.mark.parametrize("path", _PAIRED, ids=[p.stem for p in _PAIRED])
def test_a_committed_copy_has_its_source_notebooks_cells_in_order(path):
    """A prose edit copied into an executed copy must land on the same cell: the copy has papermill's
    parameters cell besides the source's, so indices are off by one there."""
    def kinds(nb):
        return [c.cell_type for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    copy, source = nbformat.read(path, as_version=4), nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    assert kinds(copy) == kinds(source), f"{path.name}: its cells are not the source's; rerun the notebook"


def test_every_known_unfit_copy_is_committed():
    assert set(_KNOWN_UNFIT) <= {p.name for p in _COMMITTED}


# ---- absolute paths and checkpointed runs, on small generated notebooks ----------------------------

_ROOT = "/srv/checkout/dni"  # a repository as a run on another machine would see it


def _notebook(*outputs, source="print(path)", parameters=None):
    """A one-cell executed notebook whose cell printed ``outputs`` (stream texts or output nodes)."""
    cell = new_code_cell(source, execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=o) if isinstance(o, str) else o for o in outputs]
    nb = new_notebook(cells=[new_markdown_cell("# Demo"), cell])
    if parameters is not None:
        nb.metadata["papermill"] = {"parameters": parameters}
    return nb


def test_paths_inside_the_repository_are_shown_relative_to_it_and_others_kept():
    text = (f"{_ROOT}/results/01.cpu.json\nwrote '{_ROOT}/figures/a.pdf', {_ROOT}\n"
            f"{_ROOT}2/results/x.json ../results/y.json /tmp/z\n")
    assert relative_to_root(text, _ROOT) == "results/01.cpu.json\nwrote 'figures/a.pdf', .\n" \
                                          f"{_ROOT}2/results/x.json ../results/y.json /tmp/z\n"
    assert relative_to_root(text, _ROOT + "/") == relative_to_root(text, _ROOT)
    with pytest.raises(ValueError, match="root='results' is invalid"):
        relative_to_root(text, "results")


def test_cleaning_relativises_what_outputs_show_but_never_a_source():
    html = nbformat.v4.new_output("display_data", data={"text/html": f"<td>{_ROOT}/results/a.json</td>", "text/plain": "t"})
    nb = _notebook(f"results in {_ROOT}/results/01.cpu.json\n", html, source=f"# {_ROOT}/notebooks")
    clean = clean_notebook(nb, root=_ROOT)
    assert clean.cells[1].outputs[0].text == "results in results/01.cpu.json\n"
    assert clean.cells[1].outputs[1].data["text/html"] == "<td>results/a.json</td>"
    assert clean.cells[1].source == f"# {_ROOT}/notebooks", "a source says what ran: never rewritten"
    assert clean_notebook(nb).cells[1].outputs[0].text == nb.cells[1].outputs[0].text, "no root: nothing rewritten"
    assert unfit_fields(clean) == [f"cell 1 source, line 1: an absolute path '{_ROOT}/notebooks': '# {_ROOT}/notebooks'"]


@pytest.mark.parametrize(
    "nb, expected",
    [
        (_notebook("saved to /home/ann/runs/a.json\n"), "cell 1, output 0 (stdout), line 1: an absolute path '/home/ann/runs/a.json'"),
        (_notebook("ok\n", source='x = 1\nresults_dir = "/tmp/r"'), "cell 1 source, line 2: an absolute path '/tmp/r'"),
        (_notebook("ok\n", parameters={"checkpoint_dir": "/work/ck"}),
         "notebook metadata papermill.parameters.checkpoint_dir, line 1: an absolute path '/work/ck'"),
        (_notebook(nbformat.v4.new_output("error", ename="OSError", evalue="x",
                                          traceback=["\x1b[0;31mOSError\x1b[0m: C:\\Users\\ann\\data missing"])),
         r"cell 1, output 0 (traceback), line 1: an absolute path 'C:\\Users\\ann\\data'"),  # (the path's repr)
        (_notebook(nbformat.v4.new_output("execute_result", data={"text/plain": "PosixPath('/data/mnist')"}, execution_count=1)),
         "cell 1, output 0 (text/plain), line 1: an absolute path '/data/mnist'"),
        (_notebook(f"loss 0.3\ngrid: 0 runs to train, 0 training steps in all, on cpu with 1 process (12 {LOADED_FROM} ck)\n"),
         "cell 1, output 0 (stdout), line 2: runs loaded from a checkpoint instead of trained"),
    ],
    ids=["posix-output", "source", "parameters", "windows-traceback", "result", "loaded-runs"],
)
def test_an_absolute_path_or_runs_loaded_from_a_checkpoint_make_a_copy_unfit(nb, expected):
    found = unfit_fields(clean_notebook(nb, root=_ROOT))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_relative_paths_urls_and_fractions_are_not_absolute_paths():
    nb = _notebook("../results/01.cpu.json 3/3 seeds, lr 1e-4 / 1e-3, DNI_DATA_DIR/ptb/\n"
                   "see https://arxiv.org/abs/1608.05343 and <b>x</b>\n",
                   source="Path('../figures') / name  # note: data/ptb-mini")
    assert unfit_fields(nb) == []


def test_an_unfit_copy_is_not_written_and_the_check_names_the_file_and_the_line(tmp_path, capsys):
    root = tmp_path / "repo"  # the repository the notebook ran in
    src, dest = root / "build" / "demo.ipynb", root / "executed" / "demo.ipynb"
    src.parent.mkdir(parents=True)
    nbformat.write(_notebook(f"grid: 0 runs to train (3 {LOADED_FROM} {root}/ck)\n"), src)
    with pytest.raises(UnfitCopy, match="runs loaded from a checkpoint"):
        clean_file(src, dest, root=root)
    assert not dest.parent.exists(), "nothing written, not even a folder or a temporary file"
    assert main([str(src), "--out-dir", str(dest.parent), "--root", str(root)]) == 1
    assert "not written" in capsys.readouterr().err and not dest.parent.exists()
    assert main(["--check", str(src)]) == 1
    err = capsys.readouterr().err
    assert f"{src}: cell 1, output 0 (stdout), line 1: runs loaded from a checkpoint instead of trained" in err
    assert f"{src}: cell 1, output 0 (stdout), line 1: an absolute path '{root}/ck'" in err
    nbformat.write(_notebook(f"wrote {root}/results/a.json\n"), src)  # a path in the repository: cleaning fixes it
    assert main(["--check", str(src)]) == 1
    capsys.readouterr()
    assert main([str(src), "--out-dir", str(dest.parent), "--root", str(root)]) == 0
    assert nbformat.read(dest, as_version=4).cells[1].outputs[0].text == "wrote results/a.json\n"
    assert main(["--check", str(dest)]) == 0
    assert sorted(p.name for p in dest.parent.iterdir()) == ["demo.ipynb"]


def test_the_command_line_refuses_a_root_that_is_not_an_absolute_folder(tmp_path, capsys):
    src = tmp_path / "demo.ipynb"
    nbformat.write(_notebook("ok\n"), src)
    with pytest.raises(SystemExit):
        main([str(src), "--root", str(tmp_path / "absent")])
    assert "absent' is invalid: expected the absolute path of an existing folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(src), "--root", "repo"])
    assert "--root='repo' is invalid" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\r 50%|#####     | 2/4 [00:00<00:00, 17.2it/s]\r100%|##########| 4/4 [00:01<00:00, 3.1it/s]\n", ""),
        ("loss 0.3\n\r  0%|          | 0/9 [00:00<?, ?it/s]\r       \r", "loss 0.3\n"),
        ("12it [00:03, 3.52it/s]\ndone\n", "done\n"),
        ("step 1\rstep 2\n\n  indented\n", "step 2\n\n  indented\n"),
        ("    ", ""),
    ],
)
def test_progress_residue_is_dropped_and_other_lines_kept(text, expected):
    from dni_utils.tools.executed import _without_progress

    assert _without_progress(text) == expected


def test_a_wall_clock_line_keeps_its_words_without_a_dangling_comma():
    from dni_utils.tools.executed import _without_wall_clock

    line = "wall-clock: estimated for the 4 runs, from a 10-step warm-up of each configuration on cpu, in 12 s (3 min)\n"
    assert _without_wall_clock(line) == (
        f"wall-clock: estimated for the 4 runs, from a 10-step warm-up of each configuration on cpu {WALL_CLOCK_NOTE}\n")
    assert _without_wall_clock("wall-clock: 24 runs in 576 s\n") == f"wall-clock: 24 runs {WALL_CLOCK_NOTE}\n"
