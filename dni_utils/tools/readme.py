"""Generate the README's results table and notebook index.

    python -m dni_utils.tools.readme            # rewrite README.md in place
    python -m dni_utils.tools.readme --check    # exit 1 if README.md is not up to date

The table comes from ``results/*.json`` and the index from ``notebooks/*.ipynb``; they sit between
``<!-- results:start -->`` / ``<!-- results:end -->`` and ``<!-- index:start -->`` /
``<!-- index:end -->`` and are never edited by hand. Under each notebook's table is its main
figure (``figures/<main_figure>.<profile>.png`` when the result names a ``main_figure``, else the
first ``figures/<notebook>_*.<profile>.png`` in sorted order); the index links each notebook's
source and, once ``make figures`` has kept one, its executed copy (``executed/<notebook>.ipynb``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from dni_utils.tools.results import load_results


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
    d = result["data"]
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


def results_table(results: list[dict], root: Path | None = None) -> str:
    """The results section; with ``root`` (the repository), each table is followed by its main figure."""
    if not results:
        return "_No results yet: run `make figures`._\n"
    lines = []
    for r in results:
        held = [k for k, v in r["claims"].items() if v]
        failed = [k for k, v in r["claims"].items() if not v]
        lines.append(f"**{r['notebook']}** · profile `{r['profile']}` · data: {_data(r)}  ")
        lines.append(f"Claim: {r['claim']}  ")
        status = f"checks held: {', '.join(held) or 'none'}"
        if failed:
            status += f"; **did not hold: {', '.join(failed)}**"
        lines.append(status + "\n")
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
            lines.append(f"![{r['title']}: {figure.name}]({rel})\n")
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


def render(root: Path) -> str:
    text = (root / "README.md").read_text()
    # smoke results only exercise the code: they are never part of the table
    shown = [r for r in load_results(root / "results") if r["profile"] != "smoke"]
    text = _replace(text, "results", results_table(shown, root))
    return _replace(text, "index", notebook_index(root / "notebooks", root / "executed"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = parser.parse_args(argv)
    new = render(args.root)
    readme = args.root / "README.md"
    if args.check:
        old = readme.read_text()
        if old != new:
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), "README.md", "generated", lineterm="")
            print("README.md is out of date: run `make readme`", *diff, sep="\n", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
