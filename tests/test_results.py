"""Result files, the generated README and results/README.md, and the verdicts they show."""

import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dni_utils.experiments import verdicts
from dni_utils.tools import readme
from dni_utils.tools.results import load_results, write_results

ROOT = Path(__file__).resolve().parents[1]
REAL_EXPERIMENT = readme.experiment  # before demo_module replaces it


def _result(**kw):
    return {"notebook": "99_demo", "title": "Demo", "profile": "smoke", "claim": "c", "claims": {"a": True},
            "params": {}, "data": {"dataset": "x", "n_train": 1, "n_test": 1}, "rows": [], **kw}


def test_results_are_written_whole_with_nan_as_null(tmp_path):
    path = write_results(_result(runs={"x": float("nan"), "t": (1, 2)}), tmp_path)
    assert path.name == "99_demo.smoke.json"
    assert json.loads(path.read_text())["runs"] == {"t": [1, 2], "x": None}
    assert [p.name for p in tmp_path.iterdir()] == ["99_demo.smoke.json"]


def test_a_result_missing_keys_is_refused_and_writes_nothing(tmp_path):
    bad = _result()
    del bad["rows"]
    with pytest.raises(ValueError, match=r"missing keys \['rows'\]"):
        write_results(bad, tmp_path)
    assert not list(tmp_path.iterdir())


#: The experiment module of the demo notebook 99_demo: checks "a" and "b" state its claim, the
#: others are controls.
DEMO = SimpleNamespace(
    SUMMARY=verdicts.Summary(claim="Demo claim in words.", main=("a", "b"), where="demo, error (%)",
                             key=(verdicts.KeyRow("M", r"^s$", "m"),)),
    CHECKS={"a": verdicts.Check("a within {tol:g} points", lambda r, g: "gap 0.5", "≈2"),
            "b": verdicts.Check("b holds"), "control": verdicts.Check("a control of ours")},
)


@pytest.fixture(autouse=True)
def demo_module(monkeypatch):
    """readme finds 99_demo's SUMMARY and CHECKS in DEMO; every other notebook in its module."""
    monkeypatch.setattr(readme, "experiment", lambda nb: DEMO if nb == "99_demo" else REAL_EXPERIMENT(nb))


def _demo(**kw):
    """A cpu result of 99_demo whose three checks held, with ``kw`` replacing any key."""
    return _result(**{"profile": "cpu", "params": {"tol": 4.0}, "claims": {"a": True, "b": True, "control": True},
                      "rows": [{"setting": "s", "method": "m", "metric": "e", "paper": "≈2", "reproduced": 3.14159}],
                      **kw})


def test_readme_and_results_readme_are_generated_from_the_committed_results():
    assert readme.main(["--root", str(ROOT), "--check"]) == 0, "run `make readme`"


def _committed():
    return [r for r in load_results(ROOT / "results") if r["profile"] != "smoke"]


@pytest.mark.parametrize("result", _committed(), ids=lambda r: f"{r['notebook']}.{r['profile']}")
def test_every_committed_check_has_words_and_the_summary_finds_its_checks_and_rows(result):
    module = importlib.import_module(f"dni_utils.experiments.nb{result['notebook']}")
    for name in result["claims"]:
        assert verdicts.match(name, module.CHECKS) is not None, f"{name!r}: describe it in {module.__name__}.CHECKS"
        words, measured, _ = verdicts.describe(name, result, module.CHECKS)
        assert words and "{" not in words and measured, name
    summary = module.SUMMARY
    for pattern in summary.main:
        assert any(verdicts.is_main(n, verdicts.Summary("", (pattern,), (), "")) for n in result["claims"]), pattern
    assert all(verdicts.key_row(result, key) is not None for key in summary.key), summary.key
    assert verdicts.asserted(result, summary) <= set(result["claims"])


def test_a_check_without_words_is_an_error_that_names_it():
    with pytest.raises(KeyError, match="'new_claim' of 99_demo has no description"):
        verdicts.describe("new_claim", _demo(), DEMO.CHECKS)
    with pytest.raises(ValueError, match="matches 2 patterns"):
        verdicts.match("ab", {"a.": verdicts.Check("x"), ".b": verdicts.Check("y")})


@pytest.mark.parametrize("claims, expected", [
    ({"a": True, "b": True, "control": False}, ("holds", 2, 2)),  # a failed control does not count
    ({"a": True, "b": False, "control": True}, ("partly", 1, 2)),
    ({"a": False, "b": False, "control": True}, ("does not hold", 0, 2)),
    ({"control": True}, ("not judged", 0, 0)),  # no check of the claim was computed
])
def test_the_verdict_is_computed_from_the_main_checks(claims, expected):
    assert verdicts.verdict(_demo(claims=claims), DEMO.SUMMARY) == expected
    expected_word = f"**{expected[0]}** ({expected[1]} of {expected[2]})" if expected[1:] != (0, 0) else expected[0]
    assert f"| 99 | Demo claim in words. | {expected_word} |" in readme.summary_table([_demo(claims=claims)])


def test_a_dry_run_is_not_judged():
    assert verdicts.verdict(_demo(params={"tol": 4.0, "max_steps": 1}), DEMO.SUMMARY)[0] == "not judged"


def test_the_summary_line_has_the_key_number_beside_the_paper_and_no_invented_run_time():
    line = readme.summary_table([_demo()]).splitlines()[2]
    assert line == ("| 99 | Demo claim in words. | **holds** (2 of 2) | demo, error (%):<br>M 3.14 | M ≈2 | – | "
                    "[checks](results/README.md#99_demo) |")


def test_the_run_time_comes_from_the_timings_that_make_figures_kept(tmp_path):
    (tmp_path / "results" / "timings").mkdir(parents=True)
    demo = _demo()
    (tmp_path / "results" / "timings" / f"{demo['profile']}.json").write_text(
        json.dumps({demo["notebook"]: {"minutes": 17.6, "cores": 2, "date": "2026-12-03"}}))
    assert "| 18 min | [checks]" in readme.summary_table([demo], tmp_path)
    (tmp_path / "results" / "timings" / f"{demo['profile']}.json").write_text(json.dumps({"other": {"minutes": 1.0}}))
    assert "| – | [checks]" in readme.summary_table([demo], tmp_path)


def test_results_readme_writes_every_check_in_words_beside_its_threshold_and_failed_ones_stand_out():
    text = readme.results_table([_demo(claims={"a": True, "b": False, "control": True})])
    assert "Verdict: **partly**: 1 of the 2 checks that decide it held." in text
    assert "| `a` | a within 4 points | gap 0.5 | ≈2 | yes |" in text
    assert "| `b` | b holds | – | – | **no** |" in text
    controls = text.index("Controls and diagnostics")
    assert text.index("| `control` | a control of ours |") > controls > text.index("| `b` |")
    assert "| s | m | e | ≈2 | 3.14 |" in text


def test_asserted_checks_are_marked():
    text = readme.results_table([_demo(params={"tol": 4.0, "assert_claims": ["a"]})])
    assert "| `a` | a within 4 points | gap 0.5 | ≈2 | yes, asserted |" in text
    assert "| `b` | b holds | – | – | yes |" in text


def _blocks():
    return ("<!-- summary:start -->\n<!-- summary:end -->\n<!-- index:start -->\n<!-- index:end -->\n")


def test_readme_leaves_smoke_results_out(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "README.md").write_text(_blocks())
    write_results(_demo(profile="smoke"), tmp_path / "results")
    write_results(_demo(), tmp_path / "results")
    out = readme.render(tmp_path)
    assert "profile `cpu`" in out[readme.RESULTS_README] and "profile `smoke`" not in out[readme.RESULTS_README]
    assert out[Path("README.md")].count("| 99 |") == 1


def _repo(tmp_path, figures=(), executed=()):
    """A repository skeleton: README with both blocks, one numbered notebook, figures, executed copies."""
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "README.md").write_text(_blocks())
    for folder, names in (("notebooks", ["99_demo.ipynb"]), ("executed", executed)):
        (tmp_path / folder).mkdir()
        for name in names:
            nbformat.write(new_notebook(cells=[new_markdown_cell("# 99 · Demo title")]), tmp_path / folder / name)
    (tmp_path / "figures").mkdir()
    for name in figures:
        (tmp_path / "figures" / name).write_bytes(b"png")
    return tmp_path


def test_results_readme_is_written_and_check_finds_either_file_stale(tmp_path, capsys):
    root = _repo(tmp_path)
    write_results(_demo(), root / "results")
    assert readme.main(["--root", str(root), "--check"]) == 1  # results/README.md does not exist yet
    assert readme.main(["--root", str(root)]) == 0
    assert "## 99_demo" in (root / "results" / "README.md").read_text()
    assert "[checks](results/README.md#99_demo)" in (root / "README.md").read_text()
    assert readme.main(["--root", str(root), "--check"]) == 0
    capsys.readouterr()
    stale = root / "results" / "README.md"
    stale.write_text(stale.read_text().replace("a within 4 points", "a within 5 points"))
    assert readme.main(["--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert "results/README.md is out of date" in err
    assert not any(line.startswith("README.md is out of date") for line in err.splitlines())
    readme.main(["--root", str(root)])
    write_results(_demo(claims={"a": True, "b": False, "control": True}), root / "results")  # a new result
    assert readme.main(["--root", str(root), "--check"]) == 1
    assert "README.md is out of date" in capsys.readouterr().err


def test_the_first_figure_of_the_profile_is_linked_and_shown(tmp_path):
    root = _repo(tmp_path, figures=["99_demo_b.cpu.png", "99_demo_a.cpu.png", "99_demo_a.cpu.pdf", "99_demo_0.smoke.png"])
    write_results(_demo(), root / "results")
    out = readme.render(root)
    assert "![Demo: 99_demo_a.cpu.png](../figures/99_demo_a.cpu.png)" in out[readme.RESULTS_README]
    assert out[readme.RESULTS_README].count("![") == 1
    assert "[figure](figures/99_demo_a.cpu.png)" in out[Path("README.md")]


def test_the_main_figure_a_result_names_is_shown(tmp_path):
    root = _repo(tmp_path, figures=["99_demo_a.cpu.png", "99_demo_z.cpu.png"])
    write_results(_demo(main_figure="99_demo_z"), root / "results")
    assert "](../figures/99_demo_z.cpu.png)" in readme.render(root)[readme.RESULTS_README]
    write_results(_demo(main_figure="99_demo_missing"), root / "results")
    with pytest.raises(FileNotFoundError, match="main_figure='99_demo_missing' of 99_demo"):
        readme.render(root)


def test_without_figures_none_is_shown(tmp_path):
    root = _repo(tmp_path)
    write_results(_demo(), root / "results")
    out = readme.render(root)
    assert "![" not in out[readme.RESULTS_README] and "[figure]" not in out[Path("README.md")]


def test_index_and_summary_link_the_executed_copy_when_there_is_one(tmp_path):
    row = "| [`99_demo.ipynb`](notebooks/99_demo.ipynb) | 99 · Demo title |"
    without = readme.render(_repo(tmp_path / "a"))[Path("README.md")]
    assert f"{row} – |" in without
    root = _repo(tmp_path / "b", executed=["99_demo.ipynb"])
    write_results(_demo(), root / "results")
    out = readme.render(root)
    assert f"{row} [with outputs](executed/99_demo.ipynb) |" in out[Path("README.md")]
    assert "[executed](executed/99_demo.ipynb)" in out[Path("README.md")]
    assert "[executed copy](../executed/99_demo.ipynb)" in out[readme.RESULTS_README]


def test_a_notebook_without_an_experiment_module_is_an_error_that_says_what_it_needs():
    with pytest.raises(ValueError, match="no experiment module dni_utils.experiments.nb98_nothing: it holds SUMMARY"):
        REAL_EXPERIMENT("98_nothing")


def test_checks_named_after_the_grid_ran_are_recorded_in_the_result_file_and_marked(tmp_path):
    """notebook 06 names DNI + Aux's cpu checks after its grid ran (its SUMMARY): a cpu result records
    them, a smoke result (no such names) does not, and the tables mark exactly those."""
    from dni_utils.experiments import nb06_ptb_char

    claims = {"dni_beats_bptt_at_T2": True, "dni_aux_beats_bptt_at_T2": True, "dni_aux_beats_bptt_at_T4": False}
    base = dict(notebook="06_ptb_char", claims=claims,
                params={"assert_claims": ["dni_beats_bptt_at_T2", "dni_aux_beats_bptt_at_T2"]})
    cpu = json.loads(write_results(_result(profile="cpu", **base), tmp_path).read_text())
    assert cpu["named_after_grid"] == ["dni_aux_beats_bptt_at_T2"]  # asserted and named after; T4 is not asserted
    smoke = json.loads(write_results(_result(profile="smoke", **base), tmp_path).read_text())
    assert "named_after_grid" not in smoke
    assert verdicts.named_after_grid(cpu, nb06_ptb_char.SUMMARY) == {"dni_aux_beats_bptt_at_T2"}
    table = readme.results_table([cpu])
    assert table.count("asserted (named after the grid ran)") == 1 and table.count(", asserted |") == 1


def test_a_result_on_several_data_sets_names_each_of_them():
    from dni_utils.tools.readme import _data
    mnist = {"dataset": "mnist", "label": "MNIST", "n_train": 60000, "n_test": 10000, "reduced": False}
    standin = {"dataset": "cifar10-standin", "n_train": 10000, "n_test": 2000, "synthetic": True}
    assert _data({"data": mnist}) == "MNIST (60,000 train / 10,000 test)"
    assert _data({"data": {"mnist": mnist, "cifar10": standin}}) == (
        "MNIST (60,000 train / 10,000 test); cifar10-standin (10,000 train / 2,000 test), synthetic stand-in")
