"""A split bundle's data area, read from its parts beside the executable.

A split bundle keeps the payload header, the index and the signature in the executable's section; its data
area is cut into NAME.part001, NAME.part002, ... in order (the index's `parts`: name, size and sha256 of each),
so a group may start in one part and end in the next. A reader answers seek/read at the offsets the data
area would have in an unsplit executable, so the group extraction reads from it unchanged. While the groups
stream through it, it hashes every part; by the end of an install or a verify every part has been checked at
no extra read, and a failure names the damaged part.
"""

import bisect
import contextlib
import hashlib
import os

from payload.errors import IntegrityError
from payload.fs import CHUNK


class Whole:
    """An unsplit bundle's data area: the executable itself."""

    def __init__(self, f):
        self.seek, self.read = f.seek, f.read

    @contextlib.contextmanager
    def verifying(self, complete=True):
        yield

    def close(self):
        pass


class Spans:
    """Files read as one stream whose first byte is at offset `base`; each (path, size, sha256 or None).

    Every file's size is checked when the reader is made (a missing or short file is named at once); a file
    with a sha256 is checked as its bytes stream through in order, and by `verifying()`.
    """

    def __init__(self, files, base=0, where="bundle", what="part"):
        self.where, self.what, self.base = where, what, base
        self.paths = [path for path, _, _ in files]
        self.sizes = [size for _, size, _ in files]
        self.sha256 = [sha for _, _, sha in files]
        self.starts = []
        position = base
        for size in self.sizes:
            self.starts.append(position)
            position += size
        self.end = position
        self.pos = base
        self._hashes = [hashlib.sha256() for _ in files]
        self._hashed = [0] * len(files)
        self._damaged = set()
        self._current, self._file = None, None
        for _number, (path, size) in enumerate(zip(self.paths, self.sizes)):
            try:
                actual = os.stat(path).st_size
            except FileNotFoundError:
                raise IntegrityError(
                    f"{where}: {what} {os.path.basename(path)} is missing (looked in {os.path.dirname(path)}); copy "
                    "every file its .sha256 lists beside the executable"
                ) from None
            except OSError as exc:
                raise IntegrityError(f"{where}: cannot read {what} {path}: {exc.strerror}") from None
            if actual != size:
                raise IntegrityError(
                    f"{where}: {what} {os.path.basename(path)} is {actual} bytes, expected {size}; it is cut short or "
                    "not this bundle's, copy it again"
                )

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.end + pos)
        return self.pos

    def tell(self):
        return self.pos

    def read(self, size=-1):
        if size is None or size < 0:
            size = self.end - self.pos
        chunks = []
        while size > 0 and self.base <= self.pos < self.end:
            number = bisect.bisect_right(self.starts, self.pos) - 1
            within = self.pos - self.starts[number]
            chunk = self._read_from(number, within, min(size, self.sizes[number] - within))
            chunks.append(chunk)
            self.pos += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _read_from(self, number, within, size):
        try:
            if self._current != number:
                self.close()
                self._file, self._current = open(self.paths[number], "rb"), number
            self._file.seek(within)
            chunk = self._file.read(size)
        except OSError as exc:
            raise IntegrityError(
                f"{self.where}: cannot read {self.what} {self.paths[number]}: {exc.strerror or exc}"
            ) from None
        if len(chunk) != size:
            raise IntegrityError(
                f"{self.where}: {self.what} {os.path.basename(self.paths[number])} was cut short while being read; "
                "copy it again"
            )
        self._hash(number, within, chunk)
        return chunk

    def _hash(self, number, within, chunk):
        """Extend the part's running sha256 when `chunk` continues the bytes hashed so far."""
        done = self._hashed[number]
        if self.sha256[number] is None or not within <= done < within + len(chunk):
            return
        self._hashes[number].update(memoryview(chunk)[done - within :])
        self._hashed[number] = within + len(chunk)
        if self._hashed[number] == self.sizes[number] and self._hashes[number].hexdigest() != self.sha256[number]:
            self._damaged.add(number)
            raise self._damage_error()

    def _finish(self):
        """Hash whatever no read has hashed yet, so every file with a sha256 has been checked."""
        for number, size in enumerate(self.sizes):
            while self.sha256[number] is not None and number not in self._damaged and self._hashed[number] < size:
                try:
                    self._read_from(number, self._hashed[number], min(CHUNK, size - self._hashed[number]))
                except IntegrityError:
                    if number not in self._damaged:
                        raise

    def _damage_error(self):
        names = ", ".join(os.path.basename(self.paths[n]) for n in sorted(self._damaged))
        if len(self._damaged) == 1:
            what = f"{self.what} {names} does not match its sha256; it is damaged"
        else:
            what = f"{self.what}s {names} do not match their sha256; they are damaged"
        return IntegrityError(f"{self.where}: {what}, copy again what `sha256sum -c` on the .sha256 file names")

    @contextlib.contextmanager
    def verifying(self, complete=True):
        """Every file's sha256 is checked by the end of the block (unless not `complete`: then only the bytes
        read). When the block fails on the integrity of the data, the files not yet checked are hashed, so
        that the error names a damaged file if there is one."""
        try:
            try:
                yield
            except IntegrityError:
                self._finish()
                if self._damaged:
                    raise self._damage_error() from None
                raise
            if complete:
                self._finish()
            if self._damaged:
                raise self._damage_error()
        finally:
            self.close()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file, self._current = None, None


def open_parts(payload):
    """The data area of the split bundle `payload`, from the parts beside its executable (through symlinks)."""
    directory = os.path.dirname(os.path.realpath(payload.path))
    files = [(os.path.join(directory, part.name), part.size, part.sha256) for part in payload.index.parts]
    return Spans(files, base=payload.data_offset, where=payload.path)
