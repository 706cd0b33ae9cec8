"""The nearest known name to a misspelt one, for "did you mean ...?" in error messages.

Pure module (no Pulumi import). Names are compared after folding case and treating `_`
and `-` alike (`host_count`, `HOSTCOUNT` and `hostcount` are all `hostCount`), then by
difflib's similarity ratio (Python's difflib.get_close_matches: Ratcliff/Obershelp
matching, a candidate kept when its ratio is at least `cutoff`).
"""

from __future__ import annotations

import difflib
from typing import Iterable, Optional

#: difflib's own default: a candidate shares at least 60% of its characters in order.
CUTOFF = 0.6


def _fold(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def nearest(name: str, candidates: Iterable[str], cutoff: float = CUTOFF) -> Optional[str]:
    """The candidate closest to `name`, or None when none is close enough.

    A candidate equal to `name` once case, `_` and `-` are folded wins outright; otherwise
    the folded forms are compared with difflib.get_close_matches (ties: the first in
    `candidates`' order)."""
    folded = _folded(candidates)
    if _fold(name) in folded:
        return folded[_fold(name)]
    close = nearest_names(name, folded.values(), n=1, cutoff=cutoff)
    return close[0] if close else None


def nearest_names(name: str, candidates: Iterable[str], n: int = 2, cutoff: float = CUTOFF) -> list[str]:
    """Up to `n` candidates closest to `name` (folded as in `nearest`), best first: for a
    name equally far from several (us-est-1: us-east-1, us-west-1)."""
    folded = _folded(candidates)
    return [folded[c] for c in difflib.get_close_matches(_fold(name), list(folded), n=n, cutoff=cutoff)]


def _folded(candidates: Iterable[str]) -> dict[str, str]:
    """Folded form -> the first candidate with it (candidates' order breaks ties)."""
    folded: dict[str, str] = {}
    for candidate in candidates:
        folded.setdefault(_fold(candidate), candidate)
    return folded


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = CUTOFF) -> str:
    """"did you mean X?" for the nearest candidate, or "" when none is close."""
    close = nearest(name, candidates, cutoff)
    return f"did you mean {close}?" if close else ""
