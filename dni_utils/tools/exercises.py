"""Exercise notebooks, generated from their solutions (never edited by hand).

    python -m dni_utils.tools.exercises notebooks/course/dni_course_solution.ipynb           # writes ..._exercise.ipynb
    python -m dni_utils.tools.exercises notebooks/course/dni_course_solution.ipynb --check   # exit 1 if it is out of date

In a solution notebook, the code a student writes sits in cells tagged ``solution``, between
marker lines, and starts with a short hint (one line: what to do, not how) and, optionally, a
fuller one::

    def send(h, synthesizer, context=None, scale=1.0):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        # Hint: what to do, in a line.
        # More: how to go about it, for a student who is stuck,
        #   continued on lines that start with "#" and two spaces.
        prediction = synthesizer(h.detach(), context)
        ...
        ### END SOLUTION

The exercise version keeps everything else and replaces each marked region by the short hint and a
stub that raises ``NotImplementedError`` with it (``SolutionStubPreprocessor``, an nbconvert
preprocessor); the tag becomes ``exercise``. The fuller hints of a cell go to a markdown cell after
it, collapsed (JupyterLab's ``"jupyter": {"source_hidden": true}``: click its bar to read it).
Outputs are cleared; a first cell says where the notebook comes from. Every solution cell must be
followed by a cell tagged ``check`` (which tells the student what is wrong), and every region must
have its hint: otherwise generation fails and names the cell.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, Preprocessor
from traitlets import Unicode

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_MARKER = re.compile(r"^(\s*)(### (?:BEGIN|END) SOLUTION)\s*$")
HEADER_ID = "exercise-header"
#: The tag of the collapsed markdown cell that holds an exercise's fuller hints.
HINT_TAG = "hint"


class SolutionStubPreprocessor(Preprocessor):
    """Replace the marked solution regions of the cells tagged ``solution_tag`` by their hint and a
    ``raise NotImplementedError(hint)`` stub; retag those cells ``exercise_tag``."""

    solution_tag = Unicode("solution", help="tag of the cells that hold a solution").tag(config=True)
    exercise_tag = Unicode("exercise", help="tag the stubbed cells get").tag(config=True)
    check_tag = Unicode("check", help="tag of the cell that must follow each solution cell").tag(config=True)

    def preprocess(self, nb, resources):
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        for k, i in enumerate(code):
            if self.solution_tag in nb.cells[i].metadata.get("tags", []):
                nxt = nb.cells[code[k + 1]] if k + 1 < len(code) else None
                if nxt is None or self.check_tag not in nxt.metadata.get("tags", []):
                    raise ValueError(
                        f"cell {i} is tagged {self.solution_tag!r} but the next code cell is not tagged "
                        f"{self.check_tag!r}: every exercise is followed by its check"
                    )
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        tags = cell.metadata.get("tags", [])
        marked = any(_MARKER.match(line) for line in cell.source.splitlines())
        if self.solution_tag not in tags:
            if marked:
                raise ValueError(f"cell {index} has {BEGIN!r} markers but is not tagged {self.solution_tag!r}")
            return cell, resources
        if cell.cell_type != "code" or not marked:
            raise ValueError(
                f"cell {index} is tagged {self.solution_tag!r} but is not a code cell with {BEGIN!r} ... {END!r}"
            )
        cell.source, more = _stubbed(cell.source, where=f"cell {index}")
        cell.metadata["tags"] = [self.exercise_tag if t == self.solution_tag else t for t in tags]
        if more:
            resources.setdefault("hints", {})[cell.get("id", str(index))] = more
        return cell, resources


def hint_cell(more: list[str], cell_id: str) -> nbformat.NotebookNode:
    """The collapsed markdown cell with an exercise's fuller hints (one paragraph per region)."""
    text = "\n\n".join(more)
    cell = nbformat.v4.new_markdown_cell(f"**More of a hint** (for when you are stuck; try without it first):\n\n{text}",
                                         metadata={"jupyter": {"source_hidden": True}, "tags": [HINT_TAG]})
    cell.id = f"{cell_id}-hint"
    return cell


def stub_source(source: str, where: str = "the cell") -> str:
    """``source`` with every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region replaced by its
    short hint comment and ``raise NotImplementedError(<short hint>)`` at the markers' indentation."""
    return _stubbed(source, where)[0]


def _stubbed(source: str, where: str) -> tuple[str, list[str]]:
    """``stub_source``'s text, and the fuller hint of each region that has one."""
    out: list[str] = []
    more: list[str] = []
    region: list[str] | None = None
    indent = ""
    for n, line in enumerate(source.splitlines(), start=1):
        m = _MARKER.match(line)
        if m and m.group(2) == BEGIN:
            if region is not None:
                raise ValueError(f"{where}, line {n}: {BEGIN!r} inside another solution region")
            region, indent = [], m.group(1)
        elif m:  # END
            if region is None:
                raise ValueError(f"{where}, line {n}: {END!r} without {BEGIN!r}")
            if m.group(1) != indent:
                raise ValueError(f"{where}, line {n}: {END!r} is not indented as its {BEGIN!r}")
            stub, fuller = _stub(region, indent, where, n)
            out += stub
            more += [fuller] if fuller else []
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise ValueError(f"{where}: {BEGIN!r} without {END!r}")
    return "\n".join(out), more


def _comment_block(region: list[str], start: int, prefix: str) -> tuple[list[str], int]:
    """The comment lines of ``region`` from ``start`` that open with ``# <prefix>`` and go on with
    ``#  `` lines, as text; and where they end."""
    if start >= len(region) or not region[start].strip().startswith(f"# {prefix}"):
        return [], start
    end = start + 1
    while end < len(region) and region[end].strip().startswith("#  "):
        end += 1
    return [t.strip().lstrip("#").strip() for t in region[start:end]], end


def _stub(region: list[str], indent: str, where: str, line: int) -> tuple[list[str], str]:
    hint, end = _comment_block(region, 0, "Hint:")
    if not hint:
        raise ValueError(f"{where}: the solution region ending at line {line} has no '# Hint:' comment after {BEGIN!r}")
    if len(hint) > 1:
        raise ValueError(f"{where}: the '# Hint:' of the solution region ending at line {line} is {len(hint)} lines: "
                         "expected one short line (put the rest on '# More:' lines, which go to a collapsed cell)")
    more, _ = _comment_block(region, end, "More:")
    short = hint[0].removeprefix("Hint:").strip()
    stub = [f"{indent}# Hint: {short}"]
    if more:
        stub.append(f"{indent}# (More in the collapsed cell below.)")
    fuller = " ".join(more).removeprefix("More:").strip()
    return stub + [f"{indent}raise NotImplementedError({short!r})"], fuller[:1].upper() + fuller[1:]


def exercise_path(solution: str | Path) -> Path:
    """``<name>_solution.ipynb`` -> ``<name>_exercise.ipynb``, in the same folder."""
    solution = Path(solution)
    if not solution.name.endswith("_solution.ipynb"):
        raise ValueError(f"solution={str(solution)!r} is invalid: expected a notebook named <name>_solution.ipynb")
    return solution.with_name(solution.name.removesuffix("_solution.ipynb") + "_exercise.ipynb")


def make_exercise(solution: nbformat.NotebookNode, solution_name: str) -> nbformat.NotebookNode:
    """The exercise version of the solution notebook ``solution`` (which is left as it was)."""
    nb = nbformat.from_dict(solution)  # a deep copy
    resources: dict = {}
    for pre in (ClearOutputPreprocessor(), SolutionStubPreprocessor()):
        nb, resources = pre.preprocess(nb, resources)
    hints = resources.get("hints", {})
    cells = []
    for index, cell in enumerate(nb.cells):
        cells.append(cell)
        key = cell.get("id", str(index))
        if key in hints:
            cells.append(hint_cell(hints[key], key))
    nb.cells = cells
    header = nbformat.v4.new_markdown_cell(
        f"*Exercise version of [`{solution_name}`]({solution_name}), generated from it by `make exercises`: "
        "edit the solution, not this file. Complete each cell that raises `NotImplementedError` (stuck? the "
        "collapsed cell after it has more of a hint), then run the check cell after that.*"
    )
    header.id = HEADER_ID
    nb.cells.insert(0, header)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("solutions", nargs="+", type=Path, help="solution notebooks, <name>_solution.ipynb")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an exercise is out of date")
    args = parser.parse_args(argv)
    stale = 0
    for solution in args.solutions:
        target = exercise_path(solution)
        text = nbformat.writes(make_exercise(nbformat.read(solution, as_version=4), solution.name)) + "\n"
        if not args.check:
            target.write_text(text)
            print(target)
        elif not target.exists() or target.read_text() != text:
            old = target.read_text().splitlines() if target.exists() else []
            diff = difflib.unified_diff(old, text.splitlines(), str(target), "generated", lineterm="", n=1)
            print(f"{target} is out of date: run `make exercises`", *list(diff)[:40], sep="\n", file=sys.stderr)
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
