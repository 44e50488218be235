"""Profiles: one code path, three sizes.

``smoke``: seconds, offline, tiny (CI). ``cpu``: the default, minutes on a 2-core laptop, shows the
paper's qualitative result. ``paper``: the paper's hyper-parameters, meant for a GPU.
Each experiment keeps a table ``{profile: settings}``; profiles differ only in sizes and counts.
"""

from __future__ import annotations

import copy
from typing import Any

PROFILES = ("smoke", "cpu", "paper")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown: expected one of {PROFILES}")
    return profile


def select_profile(profile: str, table: dict[str, dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` from ``table``, with the overrides that are not empty
    (``None``, ``0``, ``""`` and ``[]`` mean "the profile's value") applied on top."""
    if check_profile(profile) not in table:
        raise ValueError(f"profile={profile!r} is not defined for this notebook: expected one of {tuple(table)}")
    settings = copy.deepcopy(table[profile])
    for key, value in overrides.items():
        if key not in settings:
            raise ValueError(f"{key!r} is not a setting of this experiment: expected one of {sorted(settings)}")
        if value is None or (not isinstance(value, bool) and value in (0, "", [], ())):
            continue
        settings[key] = value
    return settings


def asserts(assert_claims: bool | list[str], claim: str) -> bool:
    """Whether a profile's ``assert_claims`` (True: every claim, False: none, or a list of claim
    names) asserts ``claim``."""
    return assert_claims if isinstance(assert_claims, bool) else claim in assert_claims


def check_seeds(seeds: list) -> list[int]:
    """A non-empty list of distinct seeds (integers >= 0), in the order given."""
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ValueError(f"seeds={seeds!r} is invalid: expected a non-empty list of integers >= 0")
    return list(dict.fromkeys(seeds))

