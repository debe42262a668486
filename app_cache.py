"""Process-wide caches the pages share: loaded models, question pools, folder listings.

Each entry is computed once per version of the files it was made from: the key holds the
modification time, size and inode of those files and folders (`stamp`), so a retrained model or
a new image in a class folder gives a new key, while an unchanged one costs a few `stat` calls
per page run instead of a scan. These are plain dictionaries, not `st.cache_resource`: a
browser can ask Streamlit to clear its caches, and that must not reload a model for everyone.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Iterable, TypeVar

Value = TypeVar("Value")

MAX_ENTRIES = 64  # per cache name: old versions of a model or folder fall out


def stamp(paths: Iterable[str | Path]) -> tuple:
    """What identifies the current version of these files and folders (missing ones included)."""
    marks = []
    for path in paths:
        try:
            stat = os.stat(path)
            marks.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except OSError:
            marks.append((str(path), None))
    return tuple(marks)


def folder_stamp(root: str | Path, depth: int = 2) -> tuple:
    """`stamp` of a folder and its sub-folders `depth` levels down: adding or removing an image in
    `<root>/<class>/` or `<root>/<split>/<class>/` changes that folder's modification time.

    A class folder holds thousands of images and no folders; listing it on every page run would
    cost more than the page (PBC: 170 ms). On POSIX file systems a folder's link count is 2 plus
    its number of sub-folders, so a count of exactly 2 says there is nothing below to list.
    """
    folders, level = [Path(root)], [Path(root)]
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                if os.stat(folder).st_nlink == 2:
                    continue
                with os.scandir(folder) as entries:
                    below += sorted(Path(entry.path) for entry in entries if entry.is_dir())
            except OSError:
                continue
        folders += below
        level = below
    return stamp(folders)


class _Entry:
    """One cached value, computed by the first caller while the others wait for it."""

    def __init__(self):
        self.ready = threading.Event()
        self.value = None
        self.error: BaseException | None = None


_caches: dict[str, "OrderedDict[Hashable, _Entry]"] = {}
_lock = threading.Lock()


def once(name: str, key: Hashable, compute: Callable[[], Value],
         max_entries: int = MAX_ENTRIES) -> Value:
    """`compute()` once per (name, key) in this process; concurrent callers share one result.

    The `max_entries` least recently used keys of a name are kept. A failure is not cached: the
    next caller tries again (the file may be fixed by then).
    """
    with _lock:
        cache = _caches.setdefault(name, OrderedDict())
        entry = cache.get(key)
        owner = entry is None
        if owner:
            entry = cache[key] = _Entry()
            while len(cache) > max_entries:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
    if owner:
        try:
            entry.value = compute()
        except BaseException as error:
            entry.error = error
            with _lock:
                if cache.get(key) is entry:
                    del cache[key]
        finally:
            entry.ready.set()
    else:
        entry.ready.wait()
    if entry.error is not None:
        raise entry.error
    return entry.value


def forget(name: str, key: Hashable) -> None:
    """Drop one entry (a result that turned out to be unusable), so the next caller recomputes."""
    with _lock:
        _caches.get(name, {}).pop(key, None)


def clear() -> None:
    """Forget everything (tests)."""
    with _lock:
        _caches.clear()
