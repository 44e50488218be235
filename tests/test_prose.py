"""The numbers the notebooks' prose states with their spread ("5.25 ± 0.02") are those of the
committed result file of the profile it speaks of (``cpu``): a re-run that moves a number makes
its sentence fail here until the prose says what the new run measured."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?"
PAIR = re.compile(rf"([−+-]?){NUMBER}\s*±\s*{NUMBER}")  # a sign written against the number counts


def stated_pairs(nb: Path) -> list[tuple[str, float, float, int]]:
    """Every "a ± b" in the notebook's markdown: (text, a, b, decimals of a)."""
    out = []
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for m in PAIR.finditer("".join(cell["source"])):
            a = float(m.group(2).replace(",", "") + (m.group(3) or "")) * (-1 if m.group(1) in ("−", "-") else 1)
            b = float(m.group(4).replace(",", "") + (m.group(5) or ""))
            out.append((m.group(0), a, b, len(m.group(3) or ".")-1))
    return out


def measured_pairs(result: dict) -> list[tuple[float, float]]:
    """(mean, spread) of every row of the result file, and of its tables of numbers with a spread."""
    pairs = [(r["reproduced"], r.get("spread") or 0.0) for r in result["rows"] if r.get("reproduced") is not None]

    def walk(obj):
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key != "runs":
                    walk(value)
            means = [k for k in obj if isinstance(obj[k], (int, float)) and f"{k} sd" in obj]
            pairs.extend((obj[k], obj[f"{k} sd"] or 0.0) for k in means)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk({k: v for k, v in result.items() if k != "rows"})
    return pairs


def _matches(a: float, b: float, digits: int, pairs) -> bool:
    for mean, spread in pairs:
        for scale in (1, 100):  # a fraction stated as a percentage
            if round(mean * scale, digits) == a and round(spread * scale, digits) == b:
                return True
    return False


CASES = [nb for nb in NOTEBOOKS if (ROOT / "results" / f"{nb.stem}.cpu.json").exists() and stated_pairs(nb)]


@pytest.mark.parametrize("nb", CASES, ids=lambda p: p.stem)
def test_every_mean_and_spread_the_prose_states_is_in_the_committed_cpu_result(nb):
    result = json.loads((ROOT / "results" / f"{nb.stem}.cpu.json").read_text())
    pairs = measured_pairs(result)
    stale = [text for text, a, b, digits in stated_pairs(nb) if not _matches(a, b, digits, pairs)]
    assert not stale, f"{nb.name} states {stale}, which results/{nb.stem}.cpu.json does not hold"


def test_the_check_catches_a_number_that_moved():
    pairs = [(0.05253, 0.0002), (1866.67, 230.9)]
    assert _matches(5.25, 0.02, 2, pairs) and _matches(1867, 231, 0, pairs)
    assert not _matches(5.26, 0.02, 2, pairs) and not _matches(5.25, 0.03, 2, pairs)
    assert _matches(-0.33, 0.17, 2, [(-0.3312, 0.171)]) and not _matches(0.33, 0.17, 2, [(-0.3312, 0.171)])
    assert len(CASES) >= 5  # the notebooks do state numbers that this test reads
