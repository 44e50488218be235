"""Executed copies: cleaning removes what changes from run to run and keeps the outputs."""

import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dni_utils.tools.executed import (
    INJECTED_ID, WALL_CLOCK_CELL_NOTE, WALL_CLOCK_NOTE, WIDGET_MIME, clean_notebook, main, volatile_fields,
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


def test_committed_executed_copies_are_clean():
    # Passes with no executed copies yet (executed/ holds them once `make figures` has run at cpu).
    for path in sorted((ROOT / "executed").glob("*.ipynb")):
        assert volatile_fields(nbformat.read(path, as_version=4)) == [], f"{path.name}: run python -m dni_utils.tools.executed"


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
