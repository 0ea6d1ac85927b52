"""Atomic file writes and the checks that keep writes inside a folder.

A low module: it imports nothing of tfladder, and everything that writes a
file tfladder must not leave half-written (checkpoints, histories, variant
folders, run manifests) goes through it.

```none
write_atomically(path, write)   write(tmp) next to path, fsync, rename onto path
write_text_atomically(path, s)  the same for text
replace_folder(folder, staged)  swap a staged copy of a folder into place
check_no_links(folder)          refuse symlinks and hard-linked files in a folder
```
"""
import ctypes
import ctypes.util
import os
import pathlib
import shutil
import stat

TMP_PREFIX = "tmp-"


def fsync_dir(directory):
    """Best-effort fsync of a folder (so that a rename in it is durable)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:     # Not supported here (e.g. some network file systems).
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_atomically(path, write):
    """Calls `write(tmp)` on a temporary file next to `path`, syncs it, then renames
    it onto `path`: readers (and a process killed at any instant) see either the
    old file or the new one, never a partial one.

    The temporary name keeps the end of `path`'s name (Keras wants weights files
    to end in `.weights.h5`). If `path` is a symlink, the link itself is
    replaced (the file it pointed to is never written).
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        write(tmp)
        fsync_file(tmp)
        _commit(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _commit(tmp, path):
    """Moves the complete, synced `tmp` over `path` in one step (`os.replace`)."""
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_text_atomically(path, text):
    write_atomically(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def check_no_links(folder):
    """Refuses symlinks (to files or folders), hard-linked files and special
    files anywhere under `folder` (the folder itself may be reached through a
    symlink). Returns the relative POSIX paths of the regular files, sorted.

    Raises:
      ValueError: naming the first offending entry.
    """
    folder = pathlib.Path(folder)
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            path = pathlib.Path(root) / name
            info = os.lstat(path)
            relative = path.relative_to(folder).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise ValueError(f"{folder}: {relative} is a symbolic link (to "
                                 f"{os.readlink(path)}); a variant folder holds only its own "
                                 "files. Copy the folder with `cp -rL` to resolve links.")
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{folder}: {relative} is not a regular file.")
            if info.st_nlink > 1:
                raise ValueError(f"{folder}: {relative} is hard-linked ({info.st_nlink} names "
                                 "for one file), so it can change from outside the folder. "
                                 "Copy the folder with `cp -r` first.")
            files.append(relative)
    return sorted(files)


def inside(path, folder):
    """Whether `path` is `folder` or lies under it (both resolved)."""
    path, folder = pathlib.Path(path).resolve(), pathlib.Path(folder).resolve()
    return path == folder or folder in path.parents


def staging_path(folder, purpose):
    """A hidden sibling of `folder` for staged writes (same file system)."""
    folder = pathlib.Path(folder)
    return folder.with_name(f".{folder.name}.tfladder-{purpose}-{os.getpid()}")


def replace_folder(folder, staged):
    """Puts the complete folder `staged` (a sibling of `folder`) in `folder`'s place.

    On Linux the two folders are exchanged in one step (`renameat2` with
    `RENAME_EXCHANGE`), so a reader or a crash sees the old folder or the new
    one, never a mix; elsewhere `folder` is renamed aside first (a crash
    between the two renames leaves both the old and the new copy beside it).
    The old contents are then deleted.
    """
    folder, staged = pathlib.Path(folder), pathlib.Path(staged)
    if _exchange(staged, folder):
        old = staged
    else:
        old = staging_path(folder, "old")
        os.rename(folder, old)
        os.rename(staged, folder)
    fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a, b):
    """Atomically swaps two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (38, 22, 95):   # ENOSYS, EINVAL (file system), EOPNOTSUPP
        return False
    raise OSError(error, os.strerror(error), str(b))
