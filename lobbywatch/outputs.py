"""Output paths given on the command line: checked before any work is done.

Every ``--out``/``--csv``/``--truth``/``--workdir`` style option goes through
:func:`output_file` or :func:`output_folder`, so a mistake a user can fix (a
folder where a file is expected, a parent that is a file, a folder that cannot
be created or written) is one :class:`~lobbywatch.errors.LobbywatchError` line
naming the option, and missing parent folders are created, as users expect of
an output path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lobbywatch.errors import LobbywatchError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _make_folder(folder: Path, option: str, given: Path) -> None:
    """Create ``folder`` (and its parents) or say in one line why it cannot be."""
    blocker = _nearest_existing(folder)
    if not blocker.is_dir():
        raise LobbywatchError(f"{option} {given}: {blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LobbywatchError(
            f"{option} {given}: cannot create folder {folder}: {exc.strerror or exc}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LobbywatchError(f"{option} {given}: folder {folder} is not writable")


def output_file(path: Path, option: str) -> Path:
    """Make ``path`` ready to be written as a file; return it unchanged.

    Creates missing parent folders. Raises :class:`LobbywatchError` (one line,
    naming ``option``) if ``path`` is a folder, if a parent is a file, or if the
    parent folder cannot be created or written.
    """
    if path.is_dir():
        raise LobbywatchError(f"{option} {path}: is a folder; give a file name")
    _make_folder(path.parent, option, path)
    return path


def output_folder(path: Path, option: str) -> Path:
    """Make ``path`` an existing, writable folder (created with its parents); return it.

    Raises :class:`LobbywatchError` (one line, naming ``option``) if ``path`` or
    a parent is a file, or if it cannot be created or written.
    """
    _make_folder(path, option, path)
    return path


def write_error(path: Path, option: str, exc: OSError) -> LobbywatchError:
    """The one-line error for an ``OSError`` raised while writing ``path``."""
    return LobbywatchError(f"{option} {path}: cannot write: {exc.strerror or exc}")


@contextmanager
def written_whole(path: Path, option: str) -> Iterator[IO[str]]:
    """A text stream whose content replaces ``path`` only if the block completes.

    The lines go to a temporary file beside ``path``, renamed over it at the end
    (``os.replace``: atomic on one file system); on any error the temporary file
    is removed and ``path`` is left as it was, so a run that stops half way never
    leaves a file that looks complete. ``path`` must have passed
    :func:`output_file`. Raises :class:`LobbywatchError` naming ``option`` when
    the file cannot be written.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise write_error(path, option, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise write_error(path, option, exc) from None
    except BaseException:
        os.unlink(tmp)
        raise
