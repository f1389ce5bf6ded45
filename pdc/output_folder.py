"""Writing a bundle folder without ever deleting what pdc did not write.

A bundle is written into a hidden temporary folder next to DIR, then put in place in one step:
renamed to DIR when DIR is new or empty, or swapped with DIR when DIR holds an earlier bundle
(its manifest.json says so), so DIR is at every moment either the complete old or the complete
new bundle. Any other non-empty DIR is refused. Temporary folders carry the writer's process id,
so the next compile into the same parent removes those whose writer was killed."""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import sys
import time
from typing import Callable

from .ir.errors import PdcError

# .NAME.tmp-PID-HEX (being written) and .NAME.old-PID-HEX (an old bundle on its way out)
TEMPORARY = re.compile(r"^\..+\.(?:tmp|old)-(?P<pid>\d{1,10})-[0-9a-f]{8}$")
# what pdc versions before the pid in the name left behind (tempfile.mkdtemp's 8 characters)
LEGACY_TEMPORARY = re.compile(r"^\..+\.tmp-[a-z0-9_]{8}$")
LEGACY_STALE_AFTER_S = 3600


def is_pdc_bundle(folder: str) -> bool:
    """Whether folder holds a bundle pdc wrote (a manifest.json naming a pdc version)."""
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"name", "pdc_version", "arena_bytes"} <= manifest.keys()


def check_output_folder(out_dir: str) -> str:
    """The absolute path pdc will write for `-o out_dir`; refuses a file, and a non-empty folder that
    holds no pdc bundle (a project folder, say), before any work is done."""
    path = os.path.abspath(out_dir)
    if os.path.islink(path):  # replace what the link points to, keep the link
        path = os.path.realpath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise PdcError(f"-o {out_dir}: exists and is not a folder")
    blocker = _file_among_parents(path)
    if blocker:
        raise PdcError(f"-o {out_dir}: {blocker} is a file, not a folder")
    if os.path.isdir(path) and _has_entries(path, out_dir) and not is_pdc_bundle(path):
        raise PdcError(f"-o {out_dir}: the folder is not empty and holds no pdc bundle; pick a new or empty "
                       f"folder (pdc only replaces a folder it wrote)")
    return path


def write_folder(out_dir: str, fill: Callable[[str], None]) -> str:
    """Calls fill(temporary folder) and puts the result in place of out_dir; returns its path."""
    path = check_output_folder(out_dir)
    parent, base = os.path.split(path)
    try:
        os.makedirs(parent, exist_ok=True)
        remove_stale_temporaries(parent)
        tmp = os.path.join(parent, _temporary_name(base, "tmp"))
        os.mkdir(tmp)
    except OSError as e:
        raise _write_error(out_dir, e) from None
    try:
        fill(tmp)
        _put_in_place(tmp, path, out_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(out_dir, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _put_in_place(tmp: str, path: str, out_dir: str) -> None:
    check_output_folder(out_dir)  # again: someone may have written into it during the compile
    if not os.path.isdir(path) or not _has_entries(path, out_dir):
        os.rename(tmp, path)  # a new name, or over an empty folder: one atomic rename
    elif exchange_folders(tmp, path):
        shutil.rmtree(tmp)  # it now holds the old bundle
    else:  # no atomic exchange here: DIR is missing between the two renames
        aside = os.path.join(os.path.dirname(path), _temporary_name(os.path.basename(path), "old"))
        os.rename(path, aside)
        os.rename(tmp, path)
        shutil.rmtree(aside)


def exchange_folders(a: str, b: str) -> bool:
    """Swaps two folders atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or file system without it
        return False
    raise OSError(err, os.strerror(err), b)


def remove_stale_temporaries(parent: str) -> None:
    """Removes the temporary folders in `parent` whose writer is gone (killed mid-compile)."""
    now = time.time()
    for entry in os.scandir(parent):
        if not entry.is_dir(follow_symlinks=False):
            continue
        m = TEMPORARY.match(entry.name)
        stale = (not _process_alive(int(m["pid"]))) if m else (
            LEGACY_TEMPORARY.match(entry.name) is not None
            and now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_STALE_AFTER_S)
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _file_among_parents(path: str):
    """The first existing ancestor of path when it is not a folder (so no folder can be made there)."""
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
    return parent if parent and not os.path.isdir(parent) else None


def _temporary_name(base: str, kind: str) -> str:
    return f".{base}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _has_entries(path: str, out_dir: str) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is not None
    except OSError as e:
        raise _write_error(out_dir, e) from None


def _write_error(out_dir: str, e: OSError) -> PdcError:
    where = f" ({e.filename})" if e.filename else ""
    return PdcError(f"-o {out_dir}: cannot write the bundle: {e.strerror or e}{where}")
