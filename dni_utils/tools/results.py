"""Result files: one JSON per notebook and profile, written whole or not at all.

Schema (what the README table is generated from)::

    {"notebook": "01_ff_mnist", "title": ..., "profile": "cpu", "claim": ...,
     "claims": {"<name>": true|false, ...}, "params": {...}, "data": {...},
     "rows": [{"setting": ..., "method": ..., "metric": ..., "paper": ..., "reproduced": ...}],
     "runs": {...}, "environment": {...}}

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
    """What ran the notebook: the versions, and the device its runs actually used (``cpu``, or
    ``cuda (<GPU model>)``), whatever else the machine has."""
    from dni_utils.tools.device import device_name

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(torch.device(device)),
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


def write_results(result: dict[str, Any], results_dir: str | Path) -> Path:
    """Validate ``result`` and write ``<results_dir>/<notebook>.<profile>.json`` atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError(f"result is missing keys {missing}: required are {REQUIRED_KEYS}")
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
