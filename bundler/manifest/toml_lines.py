"""Reading TOML with positions: tomllib keeps none, so errors could not name a line without this scanner.

Shared by the manifest reader and the lock file reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

from payload.errors import UsageError


def read_toml_text(path: Path, what: str, todo: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what}; {todo}") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a {what}; pass the path of the file") from None
    except OSError as error:
        raise UsageError(
            f"{path}: cannot read the {what} ({error.strerror}); check the path and its permissions"
        ) from None
    try:
        # A UTF-8 byte order mark (some Windows editors write one) is not TOML, but it is no reason to refuse.
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not valid UTF-8; save the {what} as UTF-8") from None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\Z")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\Z")


def parse_toml(path: Path, text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        at_end = _TOML_AT_END.search(message)
        unclosed = TomlLines(text).unclosed_line
        todo = "fix the syntax there"
        if position:
            line, what = int(position[1]), f"{message[: position.start()]} at column {position[2]}"
            if unclosed is not None and unclosed < line:
                # tomllib stumbles somewhere inside a bracket or string that was never closed: the cause is here.
                what = message[: position.start()]
                what += f" at line {line}, column {position[2]}, inside a value that opens here"
                line, todo = unclosed, "close its bracket or string"
        elif at_end:
            line, what = (
                unclosed or len(text.rstrip("\n").split("\n")),
                f"{message[: at_end.start()]} at the end of the file",
            )
            todo = "close the bracket or string that opens here"
        else:
            line, what = 1, message
        what = what[:1].lower() + what[1:]
        raise UsageError(f"{path}:{line}: invalid TOML: {what}; {todo}") from None


class TomlLines:
    """Best-effort map from TOML tables and keys to the lines that define them.

    tomllib keeps no positions, so this scans the raw text once for table headers and `key =` lines at the start
    of a statement, and follows values over several lines (arrays, multi-line strings). A table is a tuple of
    keys with the index of an array-of-tables element after its name: ("file", 2, "source", "amd64").
    """

    def __init__(self, text: str):
        self.lines = [line.rstrip("\r") for line in text.split("\n")]
        self._tables: dict[tuple, int] = {}
        self._keys: dict[tuple, list[int]] = {}  # (table, key) -> [first line, last line] of the value
        self.unclosed_line: int | None = None  # where a value opens that is never closed
        self._scan()

    def line(self, table: tuple, key: str | None = None) -> int:
        """The line of `key` in `table`, else of the table itself (header, or the key holding an inline table)."""
        if key is not None:
            path = table + (key,)
            if (table, key) in self._keys:
                return self._keys[(table, key)][0]
            # A key only ever written as part of longer headers, like 'variant' in [variant.online].
            below = [line for name, line in self._tables.items() if name[: len(path)] == path]
            if below:
                return min(below)
        while table:
            if table in self._tables:
                return self._tables[table]
            if (table[:-1], table[-1]) in self._keys:
                return self._keys[(table[:-1], table[-1])][0]
            table = table[:-1]
        return 1

    def value_line(self, table: tuple, key: str, item: str) -> int:
        """The line, within the value of `key`, that holds the string `item` (for items of multi-line arrays)."""
        span = self._keys.get((table, key))
        if span is None:
            return self.line(table, key)
        for number in range(span[0], span[1] + 1):
            text = self.lines[number - 1]
            if f'"{item}"' in text or f"'{item}'" in text:
                return number
        return span[0]

    def _scan(self) -> None:
        table: tuple = ()
        array_counts: dict[tuple, int] = {}
        depth, open_string, span = 0, None, None
        for number, line in enumerate(self.lines, 1):
            if depth or open_string:
                span[1] = number
                depth, open_string = _scan_value(line, 0, depth, open_string)
                if not (depth or open_string):
                    self.unclosed_line = None
                continue
            stripped = line.lstrip()
            if stripped.startswith("[["):
                parts, end = _parse_key(stripped, 2)
                if parts and stripped.startswith("]]", end):
                    name = self._resolve(parts, array_counts)
                    array_counts[name] = array_counts.get(name, 0) + 1
                    table = name + (array_counts[name] - 1,)
                    self._tables.setdefault(table, number)
            elif stripped.startswith("["):
                parts, end = _parse_key(stripped, 1)
                if parts and stripped.startswith("]", end):
                    table = self._resolve(parts, array_counts)
                    self._tables.setdefault(table, number)
            else:
                parts, end = _parse_key(stripped, 0)
                if parts and stripped.startswith("=", end):
                    for i in range(1, len(parts)):
                        self._keys.setdefault((table + tuple(parts[: i - 1]), parts[i - 1]), [number, number])
                    span = self._keys.setdefault((table + tuple(parts[:-1]), parts[-1]), [number, number])
                    depth, open_string = _scan_value(stripped, end + 1, 0, None)
                    if depth or open_string:
                        self.unclosed_line = number

    @staticmethod
    def _resolve(parts: list[str], array_counts: dict[tuple, int]) -> tuple:
        """Turn header keys into a table path, entering the latest element of each array of tables."""
        path: tuple = ()
        for part in parts[:-1]:
            path += (part,)
            if path in array_counts:
                path += (array_counts[path] - 1,)
        return path + (parts[-1],)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, pos: int) -> tuple[list[str] | None, int]:
    """Parse a dotted key at `pos`; return its parts and the position after it (and its trailing blanks)."""
    parts = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if text.startswith('"', pos):
            end = pos + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            parts.append(text[pos + 1 : end].replace('\\"', '"').replace("\\\\", "\\"))
            pos = end + 1
        elif text.startswith("'", pos):
            end = text.find("'", pos + 1)
            if end < 0:
                return None, pos
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE_KEY.match(text, pos)
            if not match:
                return None, pos
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if not text.startswith(".", pos):
            return parts, pos
        pos += 1


def _scan_value(text: str, pos: int, depth: int, open_string: str | None) -> tuple[int, str | None]:
    """Follow brackets and strings to the end of the line; return the bracket depth and any open multi-line string."""
    while pos < len(text):
        if open_string:
            if text[pos] == "\\" and open_string == '"""':
                pos += 2
                continue
            if text.startswith(open_string, pos):
                pos += 3
                while pos < len(text) and text[pos] == open_string[0]:
                    pos += 1
                open_string = None
                continue
            pos += 1
            continue
        char = text[pos]
        if char == "#":
            break
        if text.startswith('"""', pos) or text.startswith("'''", pos):
            open_string = text[pos : pos + 3]
            pos += 3
        elif char == '"':
            pos += 1
            while pos < len(text) and text[pos] != '"':
                pos += 2 if text[pos] == "\\" else 1
            pos += 1
        elif char == "'":
            end = text.find("'", pos + 1)
            pos = len(text) if end < 0 else end + 1
        else:
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth = max(0, depth - 1)
            pos += 1
    return depth, open_string
