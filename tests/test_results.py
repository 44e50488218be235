"""Result files and the generated README."""

import json
from pathlib import Path

import pytest

from dni_utils.tools import readme
from dni_utils.tools.results import write_results

ROOT = Path(__file__).resolve().parents[1]


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


def test_readme_is_generated_from_the_committed_results():
    assert readme.main(["--root", str(ROOT), "--check"]) == 0, "run `make readme`"


def test_readme_table_shows_failed_claims(tmp_path):
    r = _result(claims={"held": True, "broken": False},
                rows=[{"setting": "s", "method": "m", "metric": "e", "paper": "≈2", "reproduced": 3.14159}])
    text = readme.results_table([r])
    assert "**did not hold: broken**" in text and "| s | m | e | ≈2 | 3.14 |" in text


def test_readme_leaves_smoke_results_out(tmp_path):
    (tmp_path / "notebooks").mkdir()
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "README.md").write_text("<!-- results:start -->\n<!-- results:end -->\n<!-- index:start -->\n<!-- index:end -->\n")
    write_results(_result(profile="smoke"), tmp_path / "results")
    write_results(_result(profile="cpu"), tmp_path / "results")
    text = readme.render(tmp_path)
    assert "profile `cpu`" in text and "profile `smoke`" not in text


def _repo(tmp_path, figures=(), executed=()):
    """A repository skeleton: README with both blocks, one numbered notebook, figures, executed copies."""
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "README.md").write_text("<!-- results:start -->\n<!-- results:end -->\n<!-- index:start -->\n<!-- index:end -->\n")
    for folder, names in (("notebooks", ["99_demo.ipynb"]), ("executed", executed)):
        (tmp_path / folder).mkdir()
        for name in names:
            nbformat.write(new_notebook(cells=[new_markdown_cell("# 99 · Demo title")]), tmp_path / folder / name)
    (tmp_path / "figures").mkdir()
    for name in figures:
        (tmp_path / "figures" / name).write_bytes(b"png")
    return tmp_path


def test_readme_shows_the_first_figure_of_the_profile_under_the_table(tmp_path):
    root = _repo(tmp_path, figures=["99_demo_b.cpu.png", "99_demo_a.cpu.png", "99_demo_a.cpu.pdf", "99_demo_0.smoke.png"])
    write_results(_result(profile="cpu"), root / "results")
    text = readme.render(root)
    assert "![Demo: 99_demo_a.cpu.png](figures/99_demo_a.cpu.png)" in text
    assert text.count("![") == 1


def test_readme_shows_the_main_figure_a_result_names(tmp_path):
    root = _repo(tmp_path, figures=["99_demo_a.cpu.png", "99_demo_z.cpu.png"])
    write_results(_result(profile="cpu", main_figure="99_demo_z"), root / "results")
    assert "](figures/99_demo_z.cpu.png)" in readme.render(root)
    write_results(_result(profile="cpu", main_figure="99_demo_missing"), root / "results")
    with pytest.raises(FileNotFoundError, match="main_figure='99_demo_missing' of 99_demo"):
        readme.render(root)


def test_readme_without_figures_shows_none(tmp_path):
    root = _repo(tmp_path)
    write_results(_result(profile="cpu"), root / "results")
    assert "![" not in readme.render(root)


def test_index_links_the_source_and_the_executed_copy_when_there_is_one(tmp_path):
    row = "| [`99_demo.ipynb`](notebooks/99_demo.ipynb) | 99 · Demo title |"
    assert f"{row} – |" in readme.render(_repo(tmp_path / "a"))
    with_copy = readme.render(_repo(tmp_path / "b", executed=["99_demo.ipynb"]))
    assert f"{row} [with outputs](executed/99_demo.ipynb) |" in with_copy
