"""Generate the README's table of results and notebook index, and ``results/README.md``.

    python -m dni_utils.tools.readme            # rewrite README.md and results/README.md
    python -m dni_utils.tools.readme --check    # exit 1 if either is not up to date

Both come from ``results/*.json`` (smoke results left out), ``notebooks/*.ipynb`` and each
notebook's experiment module (``dni_utils.experiments.nbXX_*``: its ``SUMMARY`` and ``CHECKS``,
see ``dni_utils.experiments.verdicts``). In README.md they sit between ``<!-- summary:start -->`` /
``<!-- summary:end -->`` (one line per notebook: the paper's claim, the verdict computed from the
result's checks, the key number beside the paper's) and ``<!-- index:start -->`` /
``<!-- index:end -->``; ``results/README.md`` is generated whole: per notebook, every check in
words beside its threshold and what was measured, the table of numbers and the main figure
(``figures/<main_figure>.<profile>.png`` when the result names a ``main_figure``, else the first
``figures/<notebook>_*.<profile>.png`` in sorted order). Neither is edited by hand.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

from dni_utils.experiments import verdicts
from dni_utils.tools.results import load_results

#: The generated file of per-notebook tables, relative to the repository root.
RESULTS_README = Path("results") / "README.md"


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _reproduced(row: dict) -> str:
    """The reproduced number, with its spread over seeds (± one standard deviation, n runs) when
    the row has several; ``digits`` (default 2) decimals, for rows whose differences are smaller."""
    digits = row.get("digits", 2)
    text = _fmt(row.get("reproduced"), digits)
    if row.get("n", 1) > 1 and row.get("spread") is not None:
        text += f" ± {row['spread']:.{digits}f} (n={row['n']})"
    return text


def _data(result: dict) -> str:
    """The result's data in words: one data set's ``describe()``, or ``{role: describe()}`` for a
    notebook that trains on several (notebook 10)."""
    d = result["data"]
    if "dataset" not in d:
        return "; ".join(_one_data(one) for one in d.values())
    return _one_data(d)


def _one_data(d: dict) -> str:
    text = f"{d.get('label') or d['dataset']} ({d['n_train']:,} train / {d['n_test']:,} test)"
    if d.get("synthetic"):
        text += ", synthetic stand-in"
    elif d.get("reduced"):
        text += ", reduced"
    return text


def main_figure(result: dict, figures_dir: Path) -> Path | None:
    """The PNG shown under a notebook's table: the result's ``main_figure`` if it names one, else the
    first of the notebook's figures at the result's profile in sorted order; None if there is none."""
    profile = result["profile"]
    if result.get("main_figure"):
        path = figures_dir / f"{result['main_figure']}.{profile}.png"
        if not path.exists():
            raise FileNotFoundError(f"main_figure={result['main_figure']!r} of {result['notebook']}: {path} does not exist")
        return path
    return next(iter(sorted(figures_dir.glob(f"{result['notebook']}_*.{profile}.png"))), None)


def experiment(notebook: str) -> ModuleType:
    """The experiment module of ``notebook`` (``01_ff_mnist`` -> ``dni_utils.experiments.nb01_ff_mnist``),
    which holds its ``SUMMARY`` and ``CHECKS``."""
    name = f"dni_utils.experiments.nb{notebook}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ValueError(
            f"notebook {notebook!r} has no experiment module {name}: it holds SUMMARY and CHECKS") from error
    missing = [attr for attr in ("SUMMARY", "CHECKS") if not hasattr(module, attr)]
    if missing:
        raise ValueError(f"{name} has no {' and no '.join(missing)}: see dni_utils.experiments.verdicts")
    return module


def _cell(text: str | None) -> str:
    """A markdown table cell: "–" for nothing, pipes escaped."""
    return "–" if text in (None, "") else str(text).replace("|", "\\|")


def _anchor(result: dict) -> str:
    """The notebook's section in results/README.md (its heading is the notebook's name)."""
    return f"{RESULTS_README.as_posix()}#{result['notebook']}"


def _verdict_words(result: dict, summary: verdicts.Summary) -> str:
    word, held, judged = verdicts.verdict(result, summary)
    if word == verdicts.NOT_JUDGED:
        return word
    named = {n for n in verdicts.named_after_grid(result, summary) if verdicts.is_main(n, summary)}
    return f"**{word}** ({held} of {judged}" + (f"; {len(named)} named after the grid ran" if named else "") + ")"


def _key_numbers(result: dict, summary: verdicts.Summary) -> tuple[str, str]:
    """The key numbers (reproduced, and the paper's) of a notebook's line."""
    ours, paper = [], []
    for key in summary.key:
        row = verdicts.key_row(result, key)
        if row is None:
            continue
        value = row.get("reproduced")
        ours.append(f"{key.label} {_fmt(value, row.get('digits', 2))}")
        if row.get("paper") is not None:
            paper.append((key.label, str(row["paper"])))
    if summary.paper is not None:
        theirs = summary.paper
    elif paper and len({v for _, v in paper}) == 1 and len(paper) == len(ours) > 1:
        theirs = f"{paper[0][1]} each"
    else:
        theirs = " · ".join(f"{label} {v}" for label, v in paper)
    return f"{summary.where}:<br>{' · '.join(ours)}", theirs


def _runtime(result: dict, root: Path | None) -> str:
    """The notebook's run time, from ``results/timings/<profile>.json`` (``make figures`` keeps
    papermill's there: result files keep no timings, so that the same run gives the same bytes,
    and executed copies drop the seconds their notebooks print); "–" where none was kept."""
    path = None if root is None else root / "results" / "timings" / f"{result['profile']}.json"
    entry = json.loads(path.read_text()).get(result["notebook"]) if path is not None and path.is_file() else None
    if not entry:
        return "–"
    return f"{entry['minutes']:.0f} min" if entry["minutes"] >= 1 else "< 1 min"


def summary_table(results: list[dict], root: Path | None = None) -> str:
    """README's table: one line per result: the paper's claim, the verdict, the key number beside
    the paper's, the run time, and links to the executed copy, the main figure and the checks."""
    if not results:
        return "_No results yet: run `make figures`._\n"
    profiles = sorted({r["profile"] for r in results})
    at = f" at `{profiles[0]}`" if len(profiles) == 1 else ""
    lines = [
        f"| notebook | the paper's claim | verdict{at} | reproduced{at} | paper | run time{at} | read |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in results:
        summary = experiment(r["notebook"]).SUMMARY
        ours, theirs = _key_numbers(r, summary)
        verdict = _verdict_words(r, summary) + ("" if at else f" (`{r['profile']}`)")
        links = [f"[checks]({_anchor(r)})"]
        if root is not None and (root / "executed" / f"{r['notebook']}.ipynb").exists():
            links.append(f"[executed](executed/{r['notebook']}.ipynb)")
        figure = main_figure(r, root / "figures") if root is not None else None
        if figure is not None:
            links.append(f"[figure]({figure.relative_to(root).as_posix()})")
        if summary.note:
            notes.append(f"† {r['notebook'][:2]}: {summary.note}.")
            verdict += " †"
        lines.append(f"| {r['notebook'][:2]} | {_cell(summary.claim)} | {verdict} | {ours} | {_cell(theirs)} | "
                     f"{_runtime(r, root)} | {' · '.join(links)} |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "  \n".join(notes) + "\n"
    return text


def _checks_table(result: dict, module: ModuleType, names: list[str], asserted: set[str]) -> list[str]:
    named = verdicts.named_after_grid(result, module.SUMMARY)
    lines = ["| check | what it requires | measured | paper | held |", "|---|---|---|---|---|"]
    for name in names:
        words, measured, paper = verdicts.describe(name, result, module.CHECKS)
        held = "yes" if result["claims"][name] else "**no**"
        if name in asserted:
            held += ", asserted (named after the grid ran)" if name in named else ", asserted"
        lines.append(f"| `{name}` | {_cell(words)} | {_cell(measured)} | {_cell(paper)} | {held} |")
    return lines


def results_table(results: list[dict], root: Path | None = None) -> str:
    """The sections of results/README.md, one per result: the verdict, every check in words beside
    its threshold, what was measured and the paper's number, then the table of numbers; with
    ``root`` (the repository), each section ends with its main figure."""
    if not results:
        return "_No results yet: run `make figures`._\n"
    lines = []
    for r in results:
        module = experiment(r["notebook"])
        summary = module.SUMMARY
        word, held, judged = verdicts.verdict(r, summary)
        asserted = verdicts.asserted(r, summary)
        links = [f"[notebook](../notebooks/{r['notebook']}.ipynb)"]
        if root is not None and (root / "executed" / f"{r['notebook']}.ipynb").exists():
            links.append(f"[executed copy](../executed/{r['notebook']}.ipynb)")
        lines.append(f"## {r['notebook']}\n")
        lines.append(f"**{r['title']}** · profile `{r['profile']}` · data: {_data(r)} · {' · '.join(links)}\n")
        lines.append(f"Claim: {r['claim']}\n")
        if word == verdicts.NOT_JUDGED:
            lines.append(f"Verdict: **{word}**" + (" (a dry run)" if r["params"].get("max_steps") else "") + "\n")
        else:
            lines.append(f"Verdict: **{word}**: {held} of the {judged} checks that decide it held."
                         + (f" Note: {summary.note}." if summary.note else "") + "\n")
        main = [n for n in r["claims"] if verdicts.is_main(n, summary)]
        other = [n for n in r["claims"] if n not in main]
        lines += _checks_table(r, module, main, asserted) + [""]
        if other:
            lines.append("Controls and diagnostics (they do not decide the verdict):\n")
            lines += _checks_table(r, module, other, asserted) + [""]
        lines.append("| setting | method | metric | paper | reproduced |")
        lines.append("|---|---|---|---|---|")
        for row in r["rows"]:
            lines.append(
                f"| {row['setting']} | {row['method']} | {row['metric']} | "
                f"{_fmt(row.get('paper'))} | {_reproduced(row)} |"
            )
        lines.append("")
        figure = main_figure(r, root / "figures") if root is not None else None
        if figure is not None:
            rel = figure.relative_to(root).as_posix()
            lines.append(f"![{r['title']}: {figure.name}](../{rel})\n")
    return "\n".join(lines)


def notebook_index(notebooks_dir: Path, executed_dir: Path | None = None) -> str:
    """One row per numbered notebook: its source, its title and its executed copy (when one exists
    in ``executed_dir``)."""
    lines = ["| notebook | result | executed at `cpu` |", "|---|---|---|"]
    for nb_path in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(nb_path.read_text())
        title = nb_path.stem
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                first = "".join(cell["source"]).strip().splitlines()[0]
                title = first.lstrip("# ").strip()
                break
        executed = "–"
        if executed_dir is not None and (executed_dir / nb_path.name).exists():
            executed = f"[with outputs]({executed_dir.name}/{nb_path.name})"
        lines.append(f"| [`{nb_path.name}`](notebooks/{nb_path.name}) | {title} | {executed} |")
    return "\n".join(lines) + "\n"


def _replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


RESULTS_HEAD = """# Results: paper vs reproduced

Generated from `results/*.json` by `make readme` (`python -m dni_utils.tools.readme`); do not edit
by hand. The [README](../README.md#results-at-a-glance) has one line per notebook; here is each
notebook's verdict, every check its result file holds, in words beside its threshold, and the table
of numbers.

- **Verdict**: computed from the checks, never written by hand. The checks in the first table of a
  notebook state the paper's claim: **holds** when every one of them held, **partly** when some
  did, **does not hold** when none did. The second table, where there is one, holds controls and
  diagnostics of ours; they are reported, and do not decide the verdict.
- **held**: *asserted* marks the checks the profile asserts: the notebook fails when one of them
  does not hold. The others are judged and reported, held or not. *Named after the grid ran*: the
  check was chosen for asserting once that profile's grid had run (the result file's
  `named_after_grid`): it describes what the runs showed, it was not predicted before them. The
  other asserted checks were named beforehand, from pilots, or are every check of the notebook.
- **measured**: what the check was judged on, read from the result file; **paper**: the paper's
  number or words for the same comparison, where it gives one (– where it does not).
- Numbers measured at a small profile or on reduced data are not the paper's numbers: read the
  profile and data lines. "a ± b (n=k)" is the mean over k seeds ± their standard deviation.
"""


def contents(results: list[dict]) -> str:
    """One line that links every notebook's section of results/README.md, with its verdict."""
    if not results:
        return ""
    items = [f"[{r['notebook']}](#{r['notebook']}) ({verdicts.verdict(r, experiment(r['notebook']).SUMMARY)[0]})"
             for r in results]
    return "Notebooks: " + " · ".join(items) + "\n\n"


def render(root: Path) -> dict[Path, str]:
    """The generated files, ``{path relative to root: text}``: README.md with its summary and index
    blocks replaced, and results/README.md."""
    text = (root / "README.md").read_text()
    # smoke results only exercise the code: they are never part of the tables
    shown = [r for r in load_results(root / "results") if r["profile"] != "smoke"]
    text = _replace(text, "summary", summary_table(shown, root))
    text = _replace(text, "index", notebook_index(root / "notebooks", root / "executed"))
    return {Path("README.md"): text, RESULTS_README: RESULTS_HEAD + "\n" + contents(shown) + results_table(shown, root)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if README.md or results/README.md is out of date")
    args = parser.parse_args(argv)
    stale = 0
    for rel, new in render(args.root).items():
        path = args.root / rel
        if args.check:
            old = path.read_text() if path.exists() else ""
            if old != new:
                diff = difflib.unified_diff(old.splitlines(), new.splitlines(), str(rel), "generated", lineterm="")
                print(f"{rel} is out of date: run `make readme`", *diff, sep="\n", file=sys.stderr)
                stale = 1
        else:
            path.write_text(new)
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
