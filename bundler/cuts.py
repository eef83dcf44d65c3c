"""Where a group is cut into frames (docs/format.md, section 4): only between members, so that every file is
whole in one frame."""


def cut(members):
    """How many of `members` (in order) each frame holds."""
    return [len(members)]
