"""Executed copies of the notebooks, cleaned of what changes from run to run.

    python -m dni_utils.tools.executed build/cpu/01_ff_mnist.ipynb --out-dir executed   # clean into executed/
    python -m dni_utils.tools.executed --check executed/*.ipynb                          # exit 1 if any is not clean or not fit

``make figures`` at the ``cpu`` profile keeps each executed notebook under ``executed/`` so that a
reader sees every output without running anything. What papermill and the kernel record about
*the run* rather than *the result* is removed, so that re-running a notebook with the same code
and data rewrites the same bytes:

- cell metadata other than the author's (``tags``, ``jupyter``, ``collapsed``, ``scrolled``,
  ``editable``, ``deletable``): papermill's ``start_time`` / ``end_time`` / ``duration`` /
  ``status`` / ``exception`` and the kernel's ``execution`` timestamps go; empty ``tags`` too;
- notebook metadata other than ``kernelspec``, ``language_info`` and papermill's ``parameters``:
  papermill's run times, its ``input_path`` / ``output_path``, widget state;
- the random id papermill gives its injected-parameters cell (it becomes ``injected-parameters``);
- progress-bar residue in stream outputs: consecutive streams are merged and carriage returns
  resolved as a terminal would (nbconvert's ``CoalesceStreamsPreprocessor``), then tqdm's bar
  lines and the blank lines a closed bar leaves are dropped; widget views (``tqdm.auto`` in a
  notebook) go, since their state is not kept.

- wall-clock measurements, which a notebook marks as such: a printed line that starts with
  ``wall-clock:`` (``wall_clock`` prints them) keeps its prefix, and the rest becomes a fixed
  note; a code cell tagged ``wall-clock`` (a figure or table in seconds) keeps its source, and its
  outputs become one fixed note. The numbers are in the notebook's own run (``build/<profile>/``).

Everything else is kept: printed text, tables, figures (PNG). Nothing here guesses which printed
numbers are times: a notebook that prints one without the mark leaves a copy that changes.

An executed copy is also a record of a real run on some machine, readable on any other: a path
inside the repository that an output prints as an absolute path (a results file, say) is shown
relative to the repository root (``--root``; ``/home/me/dni/results/01.json`` becomes
``results/01.json``). What cannot be made so honestly makes the copy unfit, and it is not written
(``--check`` rejects it too), with the file, the cell and the offending line:

- an absolute path (``/home/...``, ``/tmp/...``, ``C:\\...``) anywhere else: in a cell's source
  (papermill's injected parameters, say), in an output that points outside the repository, or in
  the parameters papermill recorded;
- runs loaded from checkpoints instead of trained (``train_many`` prints ``N finished runs loaded
  from <dir>``): such a copy shows none of the training it reports.

With ``--timings FILE`` (``make figures`` passes ``results/timings/cpu.json``), the run time that
papermill recorded for each notebook cleaned is kept there instead, one entry per notebook (its
minutes, the machine's cores, the day), for the README's run-time column.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearMetadataPreprocessor, CoalesceStreamsPreprocessor, Preprocessor

from dni_utils.tools.checkpoint import LOADED_FROM, write_atomically
from dni_utils.tools.clock import WALL_CLOCK, wall_clock  # noqa: F401 (wall_clock: kept importable from here)

#: Cell metadata an author sets, kept; everything else in a cell's metadata is about the run.
CELL_METADATA_KEPT = ("tags", "jupyter", "collapsed", "scrolled", "editable", "deletable")
#: Notebook metadata kept (papermill's entry keeps only the parameters the run was given).
NOTEBOOK_METADATA_KEPT = ("kernelspec", "language_info", ("papermill", "parameters"))
#: The id of papermill's injected-parameters cell (papermill draws a random one).
INJECTED_ID = "injected-parameters"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: The tag of a cell whose outputs are in seconds (``WALL_CLOCK``, in ``clock``, starts such a printed line).
WALL_CLOCK_TAG = "wall-clock"
#: What stands for a wall-clock measurement in an executed copy: in a printed line, and for a tagged cell's outputs.
WALL_CLOCK_NOTE = "(the seconds are not kept in the executed copy: they change from run to run)"
WALL_CLOCK_CELL_NOTE = "this output is in seconds and is not kept in the executed copy (it changes from run to run)"


def _wall_clock_note() -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=f"{WALL_CLOCK} {WALL_CLOCK_CELL_NOTE}\n")


#: The repository that holds this package (an editable install), where the notebooks' paths lie.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = _PACKAGE_ROOT if (_PACKAGE_ROOT / "pyproject.toml").is_file() else Path.cwd()

# An absolute path starts at the start of a line or after a space, quote, bracket, "=", "," or ">": so
# "../results/x.json", "DNI_DATA_DIR/ptb/", "https://arxiv.org/abs/...", "</td>" and "3/3" are not
# ones. POSIX: two components or more ("/a/b"), or one of the usual top-level folders ("/tmp");
# Windows: a drive letter ("C:\...", "C:/..."); not a share ("\\host\..."), which LaTeX's "\\" resembles.
_BEFORE = r"(?<![^\s'\"`(\[{=,>])"
_PART = r"[\w.~+@%-]"
ABSOLUTE_PATH = re.compile(
    rf"{_BEFORE}(?:/{_PART}+(?:/{_PART}*)+"
    r"|/(?:home|Users|root|tmp|var|opt|mnt|media|srv|scratch|data|work|private|Volumes|nfs)(?![\w.~+@%-])"
    r"|[A-Za-z]:[\\/][\w.~+@%\\/-]*)"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOADED = re.compile(rf"\b\d+ {re.escape(LOADED_FROM)}\b")

# The end of a tqdm bar: "[00:12<00:03, 41.2it/s]" or "[00:12, 41.2it/s]" (unknown total).
_TQDM = re.compile(r"\[(\d+:)?\d\d:\d\d(<((\d+:)?\d\d:\d\d|\?))?, [^\]]*(it|s)/(s|it)[^\]]*\]\s*$")


class _ClearCellMetadata(ClearMetadataPreprocessor):
    """nbconvert's metadata filter, applied to markdown and raw cells too (papermill times them all)."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell.metadata = dict(self.nested_filter(cell.metadata.items(), self.preserve_cell_metadata_mask))
        if not cell.metadata.get("tags", True):
            del cell.metadata["tags"]  # papermill adds an empty list to every cell
        return cell, resources


class _RunResidue(Preprocessor):
    """The injected cell's random id, progress-bar lines, widget views, wall-clock numbers."""

    def preprocess_cell(self, cell, resources, cell_index):
        if INJECTED_ID in cell.metadata.get("tags", []) and "id" in cell:
            cell.id = INJECTED_ID
        if cell.cell_type != "code":
            return cell, resources
        if WALL_CLOCK_TAG in cell.metadata.get("tags", []):
            cell.outputs = [_wall_clock_note()] if cell.outputs else []
            return cell, resources
        outputs = []
        for out in cell.outputs:
            if out.output_type == "stream":
                out.text = _without_wall_clock(_without_progress(out.text))
                if not out.text:
                    continue
            elif WIDGET_MIME in out.get("data", {}):
                continue
            outputs.append(out)
        cell.outputs = outputs
        return cell, resources


def _without_progress(text: str) -> str:
    """Drop tqdm bar lines and what a cleared bar leaves (blank text after a carriage return, or a
    blank fragment with no newline at the end); carriage returns left are resolved as a terminal
    shows them; every other line is kept as it is."""
    kept = []
    for line in re.findall(r"[^\n]*\n|[^\n]+$", text):  # (str.splitlines would split at "\r" too)
        visible = line.rstrip("\r\n")
        newline = "\n" if line.endswith("\n") else ""
        has_cr = "\r" in line
        if "\r" in visible:  # a terminal shows the last text written after a carriage return
            visible = next((part for part in reversed(visible.split("\r")) if part), "")
        if not visible.strip() and (has_cr or not newline):
            continue
        if _TQDM.search(visible):
            continue
        kept.append(visible + newline if has_cr else line)
    return "".join(kept)


def _without_wall_clock(text: str) -> str:
    """A line ``wall-clock: <what> in <N> s`` (or ``... in <N> s (<N'> h)``) keeps ``<what>`` and loses the seconds; any other line
    that starts with ``wall-clock:`` keeps only the prefix; both get the fixed note."""
    def note(match: re.Match) -> str:
        if match.group(1).endswith(WALL_CLOCK_NOTE):  # cleaned already
            return match.group(0)
        what = re.fullmatch(r"(.*?)[,;:]? in [0-9.,]+ s( \([^()]*\))?", match.group(1))  # "..., in 9 s": no comma left
        return f"{WALL_CLOCK} {what.group(1) + ' ' if what else ''}{WALL_CLOCK_NOTE}"

    return re.sub(rf"^{re.escape(WALL_CLOCK)} ?(.*)$", note, text, flags=re.MULTILINE)


def _output_texts(out: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """The text an output shows, as (where, text) pairs: a stream, an error's traceback, each text-like
    MIME entry of a result (images and widget state are not text)."""
    if out.output_type == "stream":
        return [(out.name, out.text)]
    if out.output_type == "error":
        return [("traceback", _ANSI.sub("", "\n".join(out.get("traceback", []))))]
    return [(mime, value if isinstance(value, str) else "".join(value))
            for mime, value in out.get("data", {}).items()
            if (mime.startswith("text/") or mime.endswith("json")) and isinstance(value, (str, list))]


def relative_to_root(text: str, root: str | Path) -> str:
    """``text`` with every absolute path inside ``root`` written relative to it
    (``<root>/results/x.json`` -> ``results/x.json``; ``<root>`` itself -> ``.``); other paths are kept."""
    for base in dict.fromkeys((str(Path(root)), str(Path(root).resolve()))):  # as given, and without links
        base = base.rstrip("/")
        if not base.startswith("/") or base == "":
            raise ValueError(f"root={str(root)!r} is invalid: expected an absolute POSIX path (the repository)")
        text = re.sub(rf"{_BEFORE}{re.escape(base)}(?:/({_PART}[\w.~+@%/-]*)?)?(?![\w.~+@%/-])",
                      lambda m: m.group(1) or ".", text)
    return text


def _relativise_outputs(nb: nbformat.NotebookNode, root: str | Path) -> None:
    """Rewrite, in place, the repository's absolute paths in what the outputs show (never in sources)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                out.text = relative_to_root(out.text, root)
            elif out.output_type == "error":
                out.traceback = [relative_to_root(line, root) for line in out.get("traceback", [])]
                out.evalue = relative_to_root(out.get("evalue", ""), root)
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out.data[mime] = relative_to_root(value, root)
                elif mime.startswith("text/") and isinstance(value, list):
                    out.data[mime] = [relative_to_root(v, root) for v in value]


def clean_notebook(nb: nbformat.NotebookNode, root: str | Path | None = None) -> nbformat.NotebookNode:
    """Return a copy of the executed notebook ``nb`` without what changes from run to run; with
    ``root`` (the repository), the absolute paths inside it that outputs show are made relative to it."""
    nb = nbformat.from_dict(nb)  # a deep copy; ``nb`` itself is left as it was
    resources: dict = {}
    for pre in (
        CoalesceStreamsPreprocessor(),
        _ClearCellMetadata(
            clear_cell_metadata=True,
            clear_notebook_metadata=True,
            preserve_cell_metadata_mask=set(CELL_METADATA_KEPT),
            preserve_nb_metadata_mask=set(NOTEBOOK_METADATA_KEPT),
        ),
        _RunResidue(),
        CoalesceStreamsPreprocessor(),  # streams that a dropped progress bar kept apart are one again
    ):
        nb, resources = pre.preprocess(nb, resources)
    nb = nbformat.from_dict(nb)  # the metadata filter leaves plain dicts
    if root is not None:
        _relativise_outputs(nb, root)
    return nb


def _line_findings(where: str, text: str, pattern: re.Pattern, what: str) -> list[str]:
    """One finding per line of ``text`` that ``pattern`` matches: where, line number, what, the line."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        match = pattern.search(line)
        if match:
            shown = line.strip() if len(line.strip()) <= 160 else line.strip()[:157] + "..."
            found.append(f"{where}, line {n}: {what.format(match=match.group(0))}: {shown!r}")
    return found


def unfit_fields(nb: nbformat.NotebookNode) -> list[str]:
    """Where ``nb`` is not a portable record of a real run, one line per finding (empty when it is one):
    an absolute file-system path in a cell's source, an output or papermill's parameters, or runs
    that were loaded from checkpoints instead of trained."""
    path_found = "an absolute path {match!r}"
    loaded = ("runs loaded from a checkpoint instead of trained (rerun so that it trains them: no checkpoint_dir, "
              "or one without finished runs)")
    found = []
    for name, value in nb.metadata.get("papermill", {}).get("parameters", {}).items():
        found += _line_findings(f"notebook metadata papermill.parameters.{name}", str(value), ABSOLUTE_PATH, path_found)
    for i, cell in enumerate(nb.cells):
        found += _line_findings(f"cell {i} source", cell.source, ABSOLUTE_PATH, path_found)
        for j, out in enumerate(cell.get("outputs", [])):
            for kind, text in _output_texts(out):
                found += _line_findings(f"cell {i}, output {j} ({kind})", text, ABSOLUTE_PATH, path_found)
                found += _line_findings(f"cell {i}, output {j} ({kind})", text, _LOADED, loaded)
    return found


def volatile_fields(nb: nbformat.NotebookNode) -> list[str]:
    """Where ``nb`` still holds something that changes from run to run, one line per finding
    (empty for a clean notebook)."""
    found = []
    allowed_nb = {k if isinstance(k, str) else k[0] for k in NOTEBOOK_METADATA_KEPT}
    found += [f"notebook metadata {k!r}" for k in nb.metadata if k not in allowed_nb]
    found += [f"notebook metadata papermill.{k}" for k in nb.metadata.get("papermill", {}) if k != "parameters"]
    for i, cell in enumerate(nb.cells):
        where = f"cell {i}"
        found += [f"{where}: metadata {k!r}" for k in cell.metadata if k not in CELL_METADATA_KEPT]
        if INJECTED_ID in cell.metadata.get("tags", []) and cell.get("id", INJECTED_ID) != INJECTED_ID:
            found.append(f"{where}: injected-parameters cell has the random id {cell.id!r}")
        outputs = cell.get("outputs", [])
        if WALL_CLOCK_TAG in cell.metadata.get("tags", []):
            if outputs and outputs != [_wall_clock_note()]:
                found.append(f"{where}: outputs of a cell tagged {WALL_CLOCK_TAG!r}")
            continue
        for j, out in enumerate(outputs):
            if out.output_type == "stream" and _without_progress(out.text) != out.text:
                found.append(f"{where}, output {j}: progress-bar residue in {out.name}")
            if out.output_type == "stream" and _without_wall_clock(out.text) != out.text:
                found.append(f"{where}, output {j}: a wall-clock time in {out.name}")
            if WIDGET_MIME in out.get("data", {}):
                found.append(f"{where}, output {j}: widget view")
    return found


class UnfitCopy(ValueError):
    """An executed notebook that cannot be made a portable record of a real run (``unfit_fields``)."""


def clean_file(src: str | Path, dest: str | Path, root: str | Path | None = None) -> Path:
    """Read the executed notebook ``src``, clean it and write it to ``dest`` (``src`` is kept).

    root: the repository whose absolute paths outputs show relative to it (None: none are).
    Raises ``UnfitCopy``, and writes nothing, when the cleaned copy still has ``unfit_fields``;
    ``dest`` is replaced only once the whole copy is written (a temporary file, then a rename).
    """
    nb = clean_notebook(nbformat.read(src, as_version=4), root)
    unfit = unfit_fields(nb)
    if unfit:
        raise UnfitCopy(f"{src}: not written to {dest}:\n" + "\n".join(f"{src}: {line}" for line in unfit))
    dest = Path(dest)
    write_atomically(dest, lambda tmp: nbformat.write(nb, tmp))
    return dest


def record_timing(src: str | Path, timings: str | Path) -> dict | None:
    """Keep papermill's run time of the executed notebook ``src`` in the JSON file ``timings``
    (``{notebook: {"minutes", "cores", "date"}}``; other notebooks' entries are kept). Returns the
    entry, or None (and changes nothing) when papermill recorded no duration."""
    meta = nbformat.read(src, as_version=4).metadata.get("papermill", {})
    if not meta.get("duration"):
        return None
    path = Path(timings)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = json.loads(path.read_text()) if path.is_file() else {}
    entry = {"minutes": round(meta["duration"] / 60, 1), "cores": os.cpu_count(),
             "date": str(meta.get("end_time") or "")[:10]}
    table[Path(src).stem] = entry
    text = json.dumps(dict(sorted(table.items())), indent=1) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="executed notebooks")
    parser.add_argument("--out-dir", type=Path, help="write the cleaned copies here (default: in place)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"the repository: absolute paths inside it that outputs show become relative to it (default: {DEFAULT_ROOT})")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any notebook is not clean, holds an absolute path or loaded its runs from checkpoints")
    parser.add_argument("--timings", type=Path,
                        help="keep each notebook's run time (papermill's) in this JSON file, e.g. results/timings/cpu.json")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"notebooks={missing} do not exist")
    if not args.root.is_absolute() or not args.root.is_dir():
        parser.error(f"--root={str(args.root)!r} is invalid: expected the absolute path of an existing folder (the repository)")
    if args.check:
        failed = False
        for path in args.notebooks:
            nb = nbformat.read(path, as_version=4)
            for line in volatile_fields(nb) + unfit_fields(nb):
                print(f"{path}: {line}", file=sys.stderr)
                failed = True
        return 1 if failed else 0
    failed = False
    for path in args.notebooks:
        try:
            print(clean_file(path, (args.out_dir or path.parent) / path.name, args.root))
        except UnfitCopy as error:
            print(error, file=sys.stderr)
            failed = True
            continue
        if args.timings:
            record_timing(path, args.timings)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
