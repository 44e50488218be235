"""Result files and the generated README."""

import json
from pathlib import Path

import pytest

from dni_utils import readme
from dni_utils.results import write_results

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
    (tmp_path / "README.md").write_text("<!-- results:start -->\n<!-- results:end -->\n<!-- index:start -->\n<!-- index:end -->\n")
    write_results(_result(profile="smoke"), tmp_path / "results")
    write_results(_result(profile="cpu"), tmp_path / "results")
    text = readme.render(tmp_path)
    assert "profile `cpu`" in text and "profile `smoke`" not in text
