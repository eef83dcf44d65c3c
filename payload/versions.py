"""How bundle versions are ordered, for the device's downgrade check (one rule, documented in the README).

A version is compared piece by piece: runs of digits as numbers, any other text as text (a number sorts before
text at the same place), so 1.10.0 is newer than 1.9.2 and 1.0 older than 1.0.1. A pre-release suffix after the
first '-' makes a version older than the same version without one (2.0.0-rc1 < 2.0.0); build metadata after '+'
is ignored (1.0.0+b1 equals 1.0.0).
"""

from payload.rules import DIGITS


def _pieces(text):
    """'1.10rc2' -> ((0, 1), (1, '.'), (0, 10), (1, 'rc'), (0, 2)): runs of digits as numbers, the rest as text."""
    pieces = []
    start = 0
    for end in range(1, len(text) + 1):
        if end == len(text) or (text[end] in DIGITS) != (text[start] in DIGITS):
            piece = text[start:end]
            pieces.append((0, int(piece)) if piece[0] in DIGITS else (1, piece))
            start = end
    return tuple(pieces)


def version_key(version):
    """A sort key that orders version strings by the rule above."""
    release, _, pre = version.split("+", 1)[0].partition("-")
    return _pieces(release), ((1,) if not pre else (0,) + _pieces(pre))


def is_older(version, than):
    return version_key(version) < version_key(than)
