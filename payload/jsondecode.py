"""json.loads without the json package, for the documents an installed start reads (the index, a version's record).

The json package imports re, and re imports enum, functools and collections: a large share of an installed start,
the more so under qemu (docs/benchmarks.md). json.loads does its work in the C scanner of _json, which needs none of
them, so this calls that scanner the way json.decoder does, with json.JSONDecoder's defaults. Where _json is missing
it is json.loads itself.
"""

_WHITESPACE = " \t\n\r"  # json.decoder's WHITESPACE


class _Defaults:
    """The attributes _json.make_scanner reads from a JSONDecoder, at their defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


def loads(data):
    """The value of the JSON document `data` (UTF-8 bytes, or str); ValueError when it is not one."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data  # UnicodeDecodeError is a ValueError
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        # A scanner per call: before Python 3.10 a scanner keeps state between calls, and threads may share none.
        value, end = make_scanner(_Defaults())(text, start)
    except StopIteration as exc:
        raise ValueError(f"expecting a JSON value at character {exc.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value
