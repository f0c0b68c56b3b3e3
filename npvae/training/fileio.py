"""Atomic file writes: a crash never leaves a half-written file that later looks valid, and a
write that fails (full disk, read-only file system, no permission) says so in one sentence.

    atomic_write(path, write)   write(binary_file) to a temporary file, fsync, rename over path
    write_text(path, text)      the same for UTF-8 text
    WriteError                  raised for any OSError of a write: names the file and the cause
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


class WriteError(OSError):
    """Writing `path` failed; str() is one sentence naming the file and the cause, e.g.
    'cannot write run/checkpoints/best.npz: no space left on device (ENOSPC)'."""

    def __init__(self, path, err: OSError, verb: str = "write"):
        super().__init__(err.errno, err.strerror, str(path))
        self.path, self.verb = Path(path), verb

    @property
    def cause(self) -> str:
        name = errno.errorcode.get(self.errno or 0)
        text = (self.strerror or "unknown error").rstrip(".")
        text = text[:1].lower() + text[1:]
        return f"{text} ({name})" if name else text

    def __str__(self) -> str:
        return f"cannot {self.verb} {self.path}: {self.cause}"


def atomic_write(path, write) -> Path:
    """Call write(binary_file) on a temporary file beside `path`, then rename it over `path`
    (os.replace is atomic on one file system) and fsync the folder, so that after a crash or
    a power cut `path` is either the old complete file or the new complete one. On any error
    the temporary file is removed and an existing `path` is left untouched; an OSError
    (ENOSPC, EROFS, EACCES, ...) is raised as WriteError naming `path`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh, tmp = _open_temp(path)
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as err:
        if isinstance(err, WriteError):
            raise
        raise WriteError(path, err) from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def is_temporary(path) -> bool:
    """Is this a temporary file of atomic_write (left behind only by a killed process)?"""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def _open_temp(path: Path):
    """(binary file, its name): a new temporary file in path's folder, named after it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return os.fdopen(fd, "wb"), tmp


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut right after it keeps the new name).
    Not every system can open a folder (Windows); there a rename is as durable as it gets."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:        # e.g. EINVAL: this file system cannot sync a folder
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
