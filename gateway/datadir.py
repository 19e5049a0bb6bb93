"""The data directory and the files the gateway keeps in it are the gateway user's alone (0700 / 0600).

The outbox, the local history and the business store hold telemetry, usage and partners' data: nobody else on the
machine reads them. SQLite gives its -wal and -shm files the permissions of the database file, so creating each
database file 0600 before SQLite opens it covers those too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700; an existing directory we own is set to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = path.stat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` 0600 if it is missing (its directory 0700 if that is missing too), else set it to 0600;
    SQLite's side files of an earlier run are set to 0600 as well. Call before `sqlite3.connect(path)`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    for suffix in SQLITE_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").chmod(FILE_MODE)
    return path
