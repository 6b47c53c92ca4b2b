"""Crash-safe file writes and checksums, shared by bundles, datasets and reports.

Every file the project writes goes to a temporary name in the same directory (so the final
rename stays on one filesystem and is atomic on POSIX) and is moved into place only once it is
complete; a failed or interrupted write leaves the old file, or nothing, never half a file.
Temporary names contain ``.tmp``, which is how ``unidiff collect`` finds leftovers of a killed run.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path`` (same suffix, so writers that infer the format from
    it still can) to write the whole file to; it is renamed to ``path`` when the block ends, and
    removed instead if the block raises (including KeyboardInterrupt), leaving ``path`` untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a binary file at a temp path next to ``path``, fsync it, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, data: dict, default: Callable[[Any], Any] | None = None) -> None:
    """``data`` as indented JSON with sorted keys; serialised before anything touches the disk."""
    text = json.dumps(data, indent=2, sort_keys=True, default=default) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
