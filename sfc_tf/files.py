"""Output files written whole or not at all, with the permissions the user's umask gives any new file."""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from collections.abc import Iterator
from typing import BinaryIO

from sfc_tf.errors import OutputError

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s contents to: a new file beside it, created with mode 0666 less the umask
    (as ``open`` creates files), renamed over ``path`` when the block ends, removed if it fails. ``OutputError``
    names ``path`` and the reason when it cannot be written (no directory, no permission, disk full)."""
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        handle = os.open(tmp, _FLAGS, 0o666)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """``path`` holds ``data`` whole, or is untouched (``atomic_output``)."""
    with atomic_output(path) as out:
        out.write(data)


def _write_error(path: pathlib.Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")
