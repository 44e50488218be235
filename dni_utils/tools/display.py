"""What a notebook shows of its own settings: a short table, not a 40-line dict."""

from __future__ import annotations

import pandas as pd


def _words(value) -> str:
    """A setting's value as a reader writes it: 0.001 as 0.001, [2, 4, 8] as "2, 4, 8", a nested
    table as "key=value; ...", True as "yes"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(v) for v in value) if value else "–"
    if isinstance(value, dict):
        return "; ".join(f"{k}={_words(v)}" for k, v in value.items())
    return str(value)


def settings_table(settings: dict, columns: int = 3, width: int = 36) -> pd.DataFrame:
    """``settings`` as a table of ``columns`` (setting, value) pairs per row, in the dict's order,
    values in words (``_words``); a value longer than ``width`` characters follows the others on
    rows of its own, wrapped at ", " / "; " to at most ``width`` characters a row. No index is shown."""
    import textwrap

    for name, value in (("columns", columns), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
    words = [(str(k), _words(v)) for k, v in settings.items()]
    short = [(k, v) for k, v in words if len(v) <= width]
    short += [("", "")] * (-len(short) % columns)
    blank = ("", "") * (columns - 1)
    rows = [sum(short[i : i + columns], ()) for i in range(0, len(short), columns)]
    for key, value in ((k, v) for k, v in words if len(v) > width):
        lines = textwrap.wrap(value, width, break_on_hyphens=False, break_long_words=False) or [""]
        rows += [(key if i == 0 else "", line) + blank for i, line in enumerate(lines)]
    header = [name for _ in range(columns) for name in ("setting", "value")]
    frame = pd.DataFrame(rows, columns=pd.Index(header))
    frame.index = [""] * len(frame)
    return frame


def rounded(value, digits: int = 3):
    """``value`` (nested dicts, lists, tuples of numbers) with every float, numpy's included, as a
    plain Python float rounded to ``digits`` decimals, so that a notebook shows 0.245, not
    ``np.float64(0.2450000000000001)``; booleans, integers and strings are kept as they are."""
    import numbers

    if not isinstance(digits, int) or isinstance(digits, bool) or digits < 0:
        raise ValueError(f"digits={digits!r} is invalid: expected a non-negative integer")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(rounded(v, digits) for v in value)
    if isinstance(value, numbers.Integral):  # bool and numpy integers included
        return value.item() if hasattr(value, "item") else value
    if isinstance(value, numbers.Real):
        return round(float(value), digits)
    return value
