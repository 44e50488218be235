"""Result files: one JSON per notebook and profile, written whole or not at all.

Schema (what the README table is generated from)::

    {"notebook": "01_ff_mnist", "title": ..., "profile": "cpu", "claim": ...,
     "claims": {"<name>": true|false, ...}, "params": {...}, "data": {...},
     "rows": [{"setting": ..., "method": ..., "metric": ..., "paper": ..., "reproduced": ...}],
     "runs": {...}, "environment": {...},
     "named_after_grid": [...]}  # where the experiment module names any: asserted checks chosen after the grid ran

No timings or absolute paths go in: the same seed, profile and machine give the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import torch

REQUIRED_KEYS = ("notebook", "title", "profile", "claim", "claims", "params", "data", "rows")


def environment(device: torch.device | str) -> dict[str, Any]:
    """What ran the notebook: the versions, the device its runs actually used (``cpu``, or
    ``cuda (<GPU model>)``), whatever else the machine has, and the CPU kernels torch dispatched to
    (``cpu_capability``: AVX2, AVX512, ...). Machines whose kernels differ sum floats in different
    orders, so the same seed can end at other numbers there (a recurrent run most visibly: its
    errors compound over the steps)."""
    from dni_utils.tools.device import device_name

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(torch.device(device)),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _clean(obj: Any) -> Any:
    """Make ``obj`` JSON-safe: tuples to lists, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return obj.name
    return obj


def _named_after_grid(result: dict[str, Any]) -> list[str] | None:
    """The asserted checks of ``result`` that its experiment module says were named after the
    profile's grid had run (``verdicts.Summary.named_after_grid``); None when the module names none
    for this profile (or ``result`` is of no notebook of the collection)."""
    import importlib

    from dni_utils.experiments import verdicts

    try:
        module = importlib.import_module(f"dni_utils.experiments.nb{result['notebook']}")
    except ModuleNotFoundError:
        return None
    summary = getattr(module, "SUMMARY", None)
    if summary is None or result["profile"] not in summary.named_after_grid:
        return None
    return sorted(verdicts.named_after_grid({k: v for k, v in result.items() if k != "named_after_grid"}, summary))


def write_results(result: dict[str, Any], results_dir: str | Path) -> Path:
    """Validate ``result`` and write ``<results_dir>/<notebook>.<profile>.json`` atomically, with
    the checks that were named after the profile's grid had run (``named_after_grid``, where the
    notebook's experiment module names any for the profile)."""
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError(f"result is missing keys {missing}: required are {REQUIRED_KEYS}")
    named = _named_after_grid(result)
    if named is not None:
        result = {**result, "named_after_grid": named}
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result['notebook']}.{result['profile']}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(_clean(result), indent=1, sort_keys=True, allow_nan=False) + "\n"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every result file in ``results_dir``, sorted by notebook then profile."""
    results = [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))]
    return sorted(results, key=lambda r: (r["notebook"], r["profile"]))
