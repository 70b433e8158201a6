"""Finding files that are not part of the installed package (model weights,
sample data): one rule set for every kind, so an installed wheel, a container
and a repository checkout behave alike.

The order, first match wins:

1. an explicit path (a command-line option or argument): used as given; a
   missing explicit file is an error, never a silent fallback;
2. the folder named by an environment variable;
3. fixed default folders of the caller (e.g. the model cache);
4. ``shared/`` and ``../shared`` relative to the current directory (the
   development layout: the shared data folder beside the repository checkout).

Nothing here looks at ``__file__``: an installed package has no repository.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lobbywatch.errors import LobbywatchError

#: environment variable naming the shared data folder (``data/``, ``models/``)
SHARED_ENV = "LOBBYWATCH_SHARED"


class NotLocatedError(LobbywatchError):
    """A file was not found by :func:`locate`; the message is one line naming
    the option and the environment variable that move it."""


def shared_dirs(cwd: Path | None = None) -> list[Path]:
    """``shared/`` and ``../shared`` below/beside ``cwd`` (default: the current directory)."""
    base = cwd or Path.cwd()
    return [base / "shared", base.parent / "shared"]


def search_dirs(
    env_var: str, defaults: Sequence[Path] = (), *, shared: str | None = None
) -> list[Path]:
    """Folders searched for a file, in priority order.

    Args:
        env_var: environment variable naming a folder (skipped when unset/empty).
        defaults: the caller's fixed folders, after the variable.
        shared: a sub-folder of the shared data folder to search last
            (``"."`` for the folder itself, ``None`` not to search it).
    """
    dirs: list[Path] = []
    env = os.environ.get(env_var)
    if env:
        dirs.append(Path(env).expanduser())
    dirs += defaults
    if shared is not None:
        dirs += [d / shared for d in shared_dirs()]
    return dirs


def locate(
    relative: str,
    *,
    what: str,
    explicit: Path | str | None,
    option: str,
    env_var: str,
    defaults: Sequence[Path] = (),
    shared: str | None = ".",
    hint: str = "",
) -> Path:
    """The file ``relative`` by the rules in the module docstring.

    Args:
        relative: path of the file below a searched folder, e.g. ``"data/video/vtest.avi"``.
        what: what the file is, for the error (``"sample video"``).
        explicit: the path given on the command line, or ``None``.
        option: the option that gives it explicitly (``"--video"``), named in errors.
        env_var: the environment variable naming the folder (``"LOBBYWATCH_SHARED"``).
        defaults: further folders searched after the variable.
        shared: sub-folder of the shared data folder to search (``None``: not searched).
        hint: appended to the not-found error (e.g. how to fetch the file).

    Returns:
        The path found (not resolved further; the caller checks its content).

    Raises:
        NotLocatedError: the explicit file is missing, or no searched folder
            holds ``relative``; one line naming ``option`` and ``env_var``.
    """
    tail = f"; {hint}" if hint else ""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise NotLocatedError(
                f"{what} {path} (given explicitly by {option}) does not exist{tail}"
            )
        return path
    dirs = search_dirs(env_var, defaults, shared=shared)
    for folder in dirs:
        path = folder / relative
        if path.is_file():
            return path
    raise NotLocatedError(
        f"{what} not found: no {relative} in {', '.join(str(d) for d in dirs)}; "
        f"pass {option} or set {env_var} to the folder holding it{tail}"
    )
