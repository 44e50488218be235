"""The course notebook: its exercise version is generated from the solution, and each check cell
fails on the exercise's stub and passes on the solution.

(The solution notebook itself runs under nbval in `make test`.)
"""

import re
from pathlib import Path

import matplotlib
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from dni_utils.tools.exercises import HINT_TAG, exercise_path, main, make_exercise, stub_source

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "notebooks" / "course"
SOLUTION = COURSE / "dni_course_solution.ipynb"
EXECUTED = ROOT / "executed" / "course" / SOLUTION.name


def _tagged(cell, tag: str) -> bool:
    return tag in cell.metadata.get("tags", [])


@pytest.fixture(scope="module")
def notebooks():
    solution = nbformat.read(SOLUTION, as_version=4)
    return solution, make_exercise(solution, SOLUTION.name)


def test_the_committed_exercise_is_the_one_generated_from_the_solution(notebooks):
    _, generated = notebooks
    committed = nbformat.read(exercise_path(SOLUTION), as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in generated.cells], (
        "run `make exercises`"
    )
    assert main([str(SOLUTION), "--check"]) == 0, "run `make exercises`"


def test_course_notebooks_carry_no_outputs():
    paths = sorted(COURSE.glob("*.ipynb"))
    assert {SOLUTION, exercise_path(SOLUTION)} <= set(paths)
    for path in paths:
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name


def test_every_exercise_is_a_stub_followed_by_its_check(notebooks):
    solution, exercise = notebooks
    stubs = [c for c in exercise.cells if _tagged(c, "exercise")]
    assert len(stubs) == len([c for c in solution.cells if _tagged(c, "solution")]) == 5
    for cell in stubs:
        assert "raise NotImplementedError(" in cell.source and "### BEGIN SOLUTION" not in cell.source
    assert not any(_tagged(c, "solution") for c in exercise.cells)


def _run(source: str, namespace: dict) -> None:
    exec(compile(source, "<cell>", "exec"), namespace)


@pytest.fixture(scope="module")
def steps(notebooks):
    """(solution cell, exercise stub, check cell, namespace just before the exercise) for each exercise.

    Runs the setup cell (the first code cell) and, in order, each solution and its check: the
    training cells in between are not needed by any check and are left to nbval.
    """
    solution, exercise = notebooks
    stubs = iter(c for c in exercise.cells if _tagged(c, "exercise"))
    code = [c for c in solution.cells if c.cell_type == "code"]
    namespace: dict = {}
    with matplotlib.rc_context():  # the setup cell sets the plotting style: keep it out of other tests
        _run(code[0].source, namespace)
    out = []
    for cell, nxt in zip(code, code[1:]):
        if _tagged(cell, "solution"):
            out.append((cell, next(stubs), nxt, dict(namespace)))
            _run(cell.source, namespace)
            _run(nxt.source, namespace)  # the check passes on the solution (or raises here)
    return out


@pytest.mark.parametrize("k", range(5))
def test_each_check_fails_on_the_stub_and_passes_on_the_solution(steps, k, capsys):
    solution, stub, check, before = steps[k]
    with_stub = dict(before)
    _run(stub.source, with_stub)
    with pytest.raises((NotImplementedError, AssertionError)):
        _run(check.source, with_stub)
    with_solution = dict(before)
    _run(solution.source, with_solution)
    _run(check.source, with_solution)
    assert "all checks passed" in capsys.readouterr().out


# Mistakes a student might make (a line of the solution changed), and what the check says about each.
_MISTAKES = [
    ("Synthesizer", "nn.init.zeros_(self.out.weight)", "pass", "predict exactly zero"),
    ("Synthesizer", "nn.init.zeros_(self.out.bias)",
     "nn.init.zeros_(self.out.bias); nn.init.zeros_(self.hidden[0].weight); nn.init.zeros_(self.hidden[0].bias)",
     "same for every trigger"),
    ("Synthesizer", "torch.cat([h, context], dim=1)", "torch.cat([h, 0 * context], dim=1)", "ignores the context"),
    ("send", "h.backward(scale * prediction.detach())", "h.backward(prediction.detach())", "not scale·δ̂'s"),
    ("send", "h.backward(scale * prediction.detach())", "(h * scale * prediction).sum().backward()",
     "back-propagated into the synthesizer"),
    ("send", "message = h.detach().requires_grad_()", "message = h", "cut from upstream's graph"),
    ("update", ".pow(2).sum() / prediction.shape[0]", ".pow(2).mean()", "averaged over the features too"),
    ("dni_step", "opt.step()  # update unlocked", "pass  # every block steps at the end", "had not updated"),
    ("dni_step", "        opt.zero_grad()\n", "", "block 0 differs"),
    ("label_context", "F.one_hot(y, n_classes).float()", "F.one_hot(y, n_classes)", "torch.float32"),
]


@pytest.mark.parametrize("name, old, new, message", _MISTAKES, ids=[f"{m[0]}-{i}" for i, m in enumerate(_MISTAKES)])
def test_a_check_says_what_is_wrong(steps, name, old, new, message):
    solution, _, check, before = next(s for s in steps if re.search(rf"(def|class) {name}\(", s[0].source))
    assert old in solution.source, (name, old)
    namespace = dict(before)
    _run(solution.source.replace(old, new, 1), namespace)
    if new.endswith("every block steps at the end"):
        _run(
            "_locked = dni_step\n"
            "def dni_step(net, x, y, context=None):\n"
            "    loss = _locked(net, x, y, context)\n"
            "    for opt in net.block_opts:\n"
            "        opt.step()\n"
            "    return loss\n",
            namespace,
        )
    with pytest.raises(AssertionError, match=re.escape(message)):
        _run(check.source, namespace)


def test_stubs_keep_the_signature_and_say_the_short_hint_only():
    source = (
        "def f(x):\n"
        '    """Doc."""\n'
        "    ### BEGIN SOLUTION\n"
        "    # Hint: an affine map.\n"
        "    # More: double it,\n"
        "    #   then add one.\n"
        "    # a comment of the solution\n"
        "    return 2 * x + 1\n"
        "    ### END SOLUTION"
    )
    stub = stub_source(source)
    assert stub == (
        'def f(x):\n    """Doc."""\n    # Hint: an affine map.\n    # (More in the collapsed cell below.)\n'
        "    raise NotImplementedError('an affine map.')"
    )
    namespace: dict = {}
    _run(stub, namespace)
    with pytest.raises(NotImplementedError, match="an affine map"):
        namespace["f"](1)
    nb = make_exercise(new_notebook(cells=[new_code_cell(source, metadata={"tags": ["solution"]}),
                                           new_code_cell("pass", metadata={"tags": ["check"]})]), "demo_solution.ipynb")
    hint = nb.cells[2]
    assert hint.cell_type == "markdown" and hint.metadata == {"jupyter": {"source_hidden": True}, "tags": [HINT_TAG]}
    assert hint.source.endswith("Double it, then add one.") and "2 * x" not in hint.source
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown", "code"], "the hint sits between stub and check"


def _solution_lines(solution) -> set[str]:
    """The code lines of the solution regions (comments dropped) that the rest of the notebook does not have."""
    inside, lines = False, set()
    for cell in solution.cells:
        if not _tagged(cell, "solution"):
            continue
        for line in cell.source.splitlines():
            if line.strip() in ("### BEGIN SOLUTION", "### END SOLUTION"):
                inside = line.strip() == "### BEGIN SOLUTION"
            elif inside and line.split("#")[0].strip():
                lines.add(line.split("#")[0].strip())
    elsewhere = "\n".join(c.source for c in solution.cells if not _tagged(c, "solution"))
    return {line for line in lines if line not in elsewhere}


def test_no_exercise_cell_hint_or_error_message_gives_the_solutions_code(notebooks):
    solution, exercise = notebooks
    lines = _solution_lines(solution)
    assert len(lines) > 20 and "h.backward(scale * prediction.detach())" in lines
    for cell in exercise.cells:
        leaked = sorted(line for line in lines if line in cell.source)
        assert not leaked, f"cell {cell.get('id')} of the exercise gives the solution's code: {leaked}"
    for cell in (c for c in exercise.cells if _tagged(c, "exercise")):
        for message in re.findall(r"raise NotImplementedError\((.*)\)", cell.source):
            assert len(message) < 110, f"{cell.id}: the error's hint is not short: {message}"


def test_every_exercise_has_its_fuller_hint_collapsed_after_it(notebooks):
    _, exercise = notebooks
    cells = exercise.cells
    for i, cell in enumerate(cells):
        if _tagged(cell, "exercise"):
            hint = cells[i + 1]
            assert _tagged(hint, HINT_TAG) and hint.id == f"{cell.id}-hint", cell.id
            assert hint.metadata["jupyter"] == {"source_hidden": True} and len(hint.source) > 80
            assert "(More in the collapsed cell below.)" in cell.source


def test_the_course_states_its_goals_and_time_and_asks_three_predict_then_run_questions(notebooks):
    solution, _ = notebooks
    top = solution.cells[0].source
    assert "**Learning goals.**" in top and re.search(r"\*\*Time\.\*\* About \d+ to \d+ minutes", top)
    ids = [c.id for c in solution.cells]
    questions = [c for c in solution.cells if c.cell_type == "markdown" and c.source.startswith("### Predict, then run")]
    assert len(questions) == 3
    for q in questions:
        run, answer = solution.cells[ids.index(q.id) + 1], solution.cells[ids.index(q.id) + 2]
        assert "**Before running" in q.source and run.cell_type == "code" and not _tagged(run, "solution")
        assert answer.source.startswith("**Answer.**") and answer.metadata.get("jupyter") == {"source_hidden": True}


def test_the_executed_solution_is_the_solution_as_it_is_now():
    executed = nbformat.read(EXECUTED, as_version=4)
    solution = nbformat.read(SOLUTION, as_version=4)
    assert [(c.cell_type, c.source) for c in executed.cells] == [(c.cell_type, c.source) for c in solution.cells], (
        f"rerun it: papermill {SOLUTION.relative_to(ROOT)} ... then python -m dni_utils.tools.executed (executed/README.md)"
    )
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code) and not [o for c in code for o in c.outputs if o.output_type == "error"]


def test_a_hint_of_more_than_one_line_is_refused():
    with pytest.raises(ValueError, match="is 2 lines: expected one short line"):
        stub_source("### BEGIN SOLUTION\n# Hint: a\n#   b\nx = 1\n### END SOLUTION")


@pytest.mark.parametrize(
    "cells, message",
    [
        ([("x = 1\n### BEGIN SOLUTION\n# Hint: h\nx = 2\n### END SOLUTION", ["solution"])], "next code cell is not tagged 'check'"),
        ([("### BEGIN SOLUTION\n# Hint: h\nx = 2\n### END SOLUTION", []), ("pass", ["check"])], "is not tagged 'solution'"),
        ([("x = 2", ["solution"]), ("pass", ["check"])], "is not a code cell with '### BEGIN SOLUTION'"),
        ([("### BEGIN SOLUTION\nx = 2\n### END SOLUTION", ["solution"]), ("pass", ["check"])], "has no '# Hint:' comment"),
        ([("### BEGIN SOLUTION\n# Hint: h\nx = 2", ["solution"]), ("pass", ["check"])], "without '### END SOLUTION'"),
        ([("def f():\n    ### BEGIN SOLUTION\n    # Hint: h\n    pass\n### END SOLUTION", ["solution"]), ("pass", ["check"])],
         "is not indented as its"),
    ],
)
def test_a_malformed_solution_notebook_is_refused_with_the_cell_named(cells, message):
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags}) for src, tags in cells])
    with pytest.raises(ValueError, match=re.escape(message)):
        make_exercise(nb, "demo_solution.ipynb")


def test_only_solution_notebooks_have_an_exercise_version():
    assert exercise_path("a/b_solution.ipynb") == Path("a/b_exercise.ipynb")
    with pytest.raises(ValueError, match="solution='a/b.ipynb' is invalid"):
        exercise_path("a/b.ipynb")
