"""Files in folders an agent can write, handled without following what it planted there.

The loop's files folder (``<state_dir>/loops/<loop_id>/``: prompt.md, failures.json,
report.json, the process ledger) is writable by the agent, also under bubblewrap. An agent
could replace ``prompt.md`` by a symbolic link to any file of the user, or ``report.json`` by a
link to ``/dev/zero`` or by a FIFO. So loopwright:

* opens the folder itself with ``O_NOFOLLOW | O_DIRECTORY`` (a symbolic link or file in its
  place is removed and a real folder made) and works relative to that descriptor;
* writes a file as a fresh temporary file (``O_CREAT | O_EXCL | O_NOFOLLOW``) renamed over the
  name, which replaces a planted link instead of writing through it (a planted folder of that
  name is removed first);
* reads a file only when it is a regular file (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``),
  and at most a given number of bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFileError(OSError):
    """The name is not a regular file (a symbolic link, FIFO, device or folder), or too large."""


def _open_child_dir(parent_fd: int, name: str, *, create: bool) -> int:
    """Open folder ``name`` under ``parent_fd`` without following a link; with ``create``, a
    missing one is made and a link or file in its place is replaced by a folder."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if not create or exc.errno not in (errno.ELOOP, errno.ENOTDIR):  # a link, or a file
            raise
        os.unlink(name, dir_fd=parent_fd)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


@contextlib.contextmanager
def open_folder(path: Path, *, trusted: Path, create: bool = True) -> Iterator[int]:
    """A descriptor of folder ``path``, whose components below ``trusted`` are opened one by one
    without following symbolic links (``trusted`` itself is made with ``os.makedirs``).

    Raises ``ValueError`` when ``path`` is not inside ``trusted``, ``OSError`` when it cannot be
    opened (``FileNotFoundError`` for a missing part when ``create`` is false).
    """
    parts = Path(path).relative_to(trusted).parts
    if create:
        os.makedirs(trusted, exist_ok=True)
    fd = os.open(trusted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            child = _open_child_dir(fd, part, create=create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def write_file_at(folder_fd: int, name: str, data: bytes) -> None:
    """Write ``data`` as file ``name`` of the folder: a new file renamed over the name."""
    temporary = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
        dir_fd=folder_fd,
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except IsADirectoryError:
            shutil.rmtree(name, dir_fd=folder_fd)
            os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder_fd)
        raise


def remove_at(folder_fd: int, name: str) -> None:
    """Remove ``name`` from the folder (a link is removed, never followed); nothing if absent."""
    try:
        if _is_dir_at(folder_fd, name):
            shutil.rmtree(name, dir_fd=folder_fd)
        else:
            os.unlink(name, dir_fd=folder_fd)
    except FileNotFoundError:
        pass


def read_file_at(folder_fd: int, name: str, max_bytes: int) -> bytes:
    """The content of regular file ``name`` of the folder.

    Raises ``FileNotFoundError`` when it is absent, :class:`UnsafeFileError` when it is not a
    regular file or holds more than ``max_bytes`` bytes.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError("it is a symbolic link, not a regular file") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError("it is not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"it holds more than {max_bytes} bytes")
    return data


def _is_dir_at(folder_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False
