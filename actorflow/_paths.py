"""Files users name: read only what is a regular file, so that a device or a pipe given
by mistake (``/dev/zero``, a FIFO) is refused in one line instead of read for ever."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["NotARegularFile", "regular_file_size"]


class NotARegularFile(OSError):
    """The path names a device, a pipe or a socket, or a file too big."""


def regular_file_size(path: str | Path, *, limit: int | None = None) -> int:
    """The size of the regular file at ``path``.

    Raises:
        NotARegularFile: ``path`` is not a regular file, or is bigger than ``limit`` bytes.
        OSError: ``path`` cannot be looked at (missing, no permission) or is a
            directory (:class:`IsADirectoryError`).
        ValueError: ``path`` cannot be a path (a NUL byte in it).
    """
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFile("not a regular file (a device, a pipe or a socket)")
    if limit is not None and info.st_size > limit:
        raise NotARegularFile(
            f"it is {info.st_size / 2**20:.1f} MiB; more than the {limit / 2**20:g} MiB accepted"
        )
    return info.st_size
