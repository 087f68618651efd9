"""Interface paths, as pure functions: syntax, names, ancestry.

A well-formed path is ``/`` or ``/name/name/...``: absolute, no empty, ``.`` or ``..``
components, no trailing ``/``, no NUL, encodable in UTF-8, at most ``PATH_MAX`` bytes.
A *name* over ``NAME_MAX`` bytes is not a syntax error: Linux reports it only when it
is looked up in an existing directory, and so does the model.
"""

from __future__ import annotations

import errno
from typing import Sequence

from spec.umfs_api import NAME_MAX, PATH_MAX


def path_problem(path: str) -> int:
    """0 if ``path`` is a well-formed interface path, else the errno it earns.

    ``ENAMETOOLONG`` for a path over ``PATH_MAX`` bytes, ``EINVAL`` for a malformed one.

    post: __return__ != 0 or path == "/" or (path[0] == "/" and all(n not in ("", ".", "..") for n in path[1:].split("/")))
    """
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return errno.EINVAL
    if size > PATH_MAX:
        return errno.ENAMETOOLONG
    if path == "/":
        return 0
    if not path.startswith("/") or "\0" in path:
        return errno.EINVAL
    for name in path[1:].split("/"):
        if name in ("", ".", ".."):
            return errno.EINVAL
    return 0


def path_names(path: str) -> tuple[str, ...]:
    """The names along a well-formed path, root first (``/`` has none).

    pre: path_problem(path) == 0
    post: "/" + "/".join(__return__) == path and all(n not in ("", ".", "..") and "/" not in n for n in __return__)
    """
    return () if path == "/" else tuple(path[1:].split("/"))


def name_too_long(name: str) -> bool:
    """Whether ``name`` is over ``NAME_MAX`` bytes in UTF-8.

    post: __return__ == (len(name.encode("utf-8")) > NAME_MAX)
    """
    return len(name) > NAME_MAX or len(name.encode("utf-8")) > NAME_MAX


def is_prefix(ancestor: Sequence[str], names: Sequence[str]) -> bool:
    """Whether the path with ``ancestor``'s names is ``names``'s path or an ancestor of it.

    post: __return__ == (len(ancestor) <= len(names) and tuple(names[: len(ancestor)]) == tuple(ancestor))
    """
    return len(ancestor) <= len(names) and all(a == b for a, b in zip(ancestor, names))


def child_path(parent: str, name: str) -> str:
    """``parent/name`` for a well-formed ``parent``."""
    return f"/{name}" if parent == "/" else f"{parent}/{name}"
