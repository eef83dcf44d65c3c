"""How bundle versions are ordered, for the device's downgrade check (one rule, documented in the README).

A version is compared piece by piece: runs of digits as numbers, any other text as text (a number sorts before
text at the same place), so 1.10.0 is newer than 1.9.2 and 1.0 older than 1.0.1. A pre-release suffix after the
first '-' makes a version older than the same version without one (2.0.0-rc1 < 2.0.0); build metadata after '+'
is ignored (1.0.0+b1 equals 1.0.0).
"""

import re

_PIECE = re.compile(r"(\d+)|(\D+)")


def _pieces(text):
    return tuple((0, int(digits)) if digits else (1, other) for digits, other in _PIECE.findall(text))


def version_key(version):
    """A sort key that orders version strings by the rule above."""
    release, _, pre = version.split("+", 1)[0].partition("-")
    return _pieces(release), ((1,) if not pre else (0,) + _pieces(pre))


def is_older(version, than):
    return version_key(version) < version_key(than)
