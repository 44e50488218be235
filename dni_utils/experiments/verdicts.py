"""How a result file reads in words: each check beside its threshold, and the verdict on the paper's claim.

Every experiment module keeps, next to the ``claims`` function that computes its checks:

- ``CHECKS``: ``{pattern: Check}``. A pattern is a regular expression that matches check names in
  full (``r"dni_beats_bptt_at_T(?P<t>\\d+)"``); its named groups, with the result's ``params``, fill
  the check's words. Every check name a result file holds must match exactly one pattern
  (``tests/test_results.py`` checks the committed results).
- ``SUMMARY``: a ``Summary``: the paper's claim in a few words, which checks state it (``main``,
  patterns again), which rows of the result are its key numbers and what the paper reports.

The verdict is computed from the result's checks, never written by hand: ``holds`` when every
main check held, ``partly`` when some did, ``does not hold`` when none did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dni_utils.experiments.profiles import asserts

#: The verdicts, from best to worst.
HOLDS, PARTLY, DOES_NOT_HOLD, NOT_JUDGED = "holds", "partly", "does not hold", "not judged"

Fields = dict[str, Any]
Text = str | Callable[[dict, Fields], str]


@dataclass(frozen=True)
class Check:
    """One check (or family of checks, by pattern) of a result file, in words.

    text: what the check requires, with its threshold: a ``str.format`` template over the
      result's ``params`` and the pattern's named groups, or a function ``(result, groups) -> str``;
    measured: ``(result, groups) -> str``, what the result file holds that the check judged (None:
      the file does not keep it);
    paper: the paper's number or words for the same comparison, where it gives one (a string, or
      a function ``(result, groups) -> str``).
    """

    text: Text
    measured: Callable[[dict, Fields], str | None] | None = None
    paper: Text | None = None


@dataclass(frozen=True)
class KeyRow:
    """A row of the result's ``rows`` shown as a key number: ``label`` and the row's reproduced
    value; the row is the first whose setting matches ``setting`` (a regular expression, searched),
    whose method is ``method`` and whose metric starts with ``metric``."""

    label: str
    setting: str
    method: str
    metric: str = ""


@dataclass(frozen=True)
class Summary:
    """A notebook's line in the README's table of results.

    claim: the paper's claim in words (short; the result file's ``claim`` is the long form);
    main: patterns of the checks that state the claim: they decide the verdict (the others are
      controls and diagnostics of ours, shown in ``results/README.md``);
    key: the rows whose reproduced numbers are the key number;
    where: what the key rows are (e.g. "FCN, 6 layers, test error %");
    paper: what the paper reports for the key rows; None: the rows' own ``paper`` fields;
    note: a caveat the reader needs beside the verdict;
    asserted: ``result -> names`` of the checks the profile asserts (default: ``assert_claims``);
    named_after_grid: per profile, patterns of the asserted checks that were named once that
      profile's grid had run (a description of what the runs showed, not a prediction made before
      them); the others were named beforehand, from pilots. ``write_results`` records them in the
      result file (``named_after_grid``).
    """

    claim: str
    main: tuple[str, ...]
    key: tuple[KeyRow, ...]
    where: str
    paper: str | None = None
    note: str | None = None
    asserted: Callable[[dict], Iterable[str]] | None = field(default=None, compare=False)
    named_after_grid: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)


def match(name: str, checks: dict[str, Check]) -> tuple[Check, Fields] | None:
    """The one ``Check`` whose pattern matches ``name`` in full, with the pattern's named groups;
    None if none does. Two matching patterns are an error (a name has one description)."""
    found = [(c, m.groupdict()) for p, c in checks.items() if (m := re.fullmatch(p, name))]
    if len(found) > 1:
        raise ValueError(f"check {name!r} matches {len(found)} patterns: expected exactly one")
    return found[0] if found else None


def describe(name: str, result: dict, checks: dict[str, Check]) -> tuple[str, str | None, str | None]:
    """``(words with the threshold, measured, paper)`` of check ``name`` of ``result``."""
    found = match(name, checks)
    if found is None:
        raise KeyError(f"check {name!r} of {result['notebook']} has no description: add it to the module's CHECKS")
    check, groups = found
    text = check.text(result, groups) if callable(check.text) else check.text.format(**result["params"], **groups)
    measured = check.measured(result, groups) if check.measured else None
    paper = check.paper(result, groups) if callable(check.paper) else check.paper
    return text, measured, paper


def is_main(name: str, summary: Summary) -> bool:
    return any(re.fullmatch(p, name) for p in summary.main)


def verdict(result: dict, summary: Summary) -> tuple[str, int, int]:
    """``(verdict, held, judged)`` over the main checks of ``result``: ``holds`` if every one held,
    ``partly`` if some did, ``does not hold`` if none did; ``not judged`` for a dry run
    (``max_steps`` in its params: its numbers are no result) or when no main check was computed."""
    if result["params"].get("max_steps"):
        return NOT_JUDGED, 0, 0
    main = [held for name, held in result["claims"].items() if is_main(name, summary)]
    if not main:
        return NOT_JUDGED, 0, 0
    held = sum(bool(h) for h in main)
    return (HOLDS if held == len(main) else PARTLY if held else DOES_NOT_HOLD), held, len(main)


def asserted(result: dict, summary: Summary) -> set[str]:
    """The checks of ``result`` its profile asserts (a notebook run fails if one does not hold)."""
    if summary.asserted is not None:
        return set(summary.asserted(result))
    flag = result["params"].get("assert_claims", False)
    return {name for name in result["claims"] if asserts(flag, name)}


def named_after_grid(result: dict, summary: Summary) -> set[str]:
    """The asserted checks of ``result`` that were named after its profile's grid had run: as its
    file records them (``named_after_grid``), or, in a file written before it recorded them, as
    ``summary`` says for its profile."""
    if "named_after_grid" in result:
        return set(result["named_after_grid"])
    patterns = summary.named_after_grid.get(result["profile"], ())
    return {n for n in asserted(result, summary) if any(re.fullmatch(p, n) for p in patterns)}


def key_row(result: dict, key: KeyRow) -> dict | None:
    """The row of ``result`` that ``key`` names (None if the result has none)."""
    return next((r for r in result["rows"] if re.search(key.setting, r["setting"]) and r["method"] == key.method
                 and r["metric"].startswith(key.metric)), None)


# Helpers for the modules' ``measured`` functions: numbers read from a result's rows.

def row_value(result: dict, setting: str, method: str, metric: str = "") -> float | None:
    """The reproduced value of the first row whose setting matches ``setting`` (searched), of
    ``method``, whose metric starts with ``metric``."""
    row = key_row(result, KeyRow("", setting, method, metric))
    return None if row is None else row.get("reproduced")


def row_cells(result: dict, method: str, metric: str = "") -> dict[str, dict]:
    """``{setting: row}`` of every row of ``method`` (whose metric starts with ``metric``)."""
    return {r["setting"]: r for r in result["rows"] if r["method"] == method and r["metric"].startswith(metric)}


def points(value: float) -> str:
    """``value`` percentage points in words: "1 point", "4 points", "0.5 points"."""
    return f"{value:g} point" + ("" if value == 1 else "s")


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
