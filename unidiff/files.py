"""Crash-safe writes of files and directories, and checksums: bundles, tokenizers, datasets, reports.

Every file or directory the project writes goes to a temporary name in the same directory (so
the final rename stays on one filesystem and is atomic on POSIX) and is moved into place only once
it is complete; a failed or interrupted write leaves the old one, or nothing, never half of one.
Temporary names contain ``.tmp``, which is how ``unidiff collect`` finds leftovers of a killed run.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp path next to ``path`` (same suffix, so writers that infer the format
    from it still can) to write the whole file to; it is renamed to ``path`` when the block ends,
    and removed instead if the block raises (including KeyboardInterrupt), leaving ``path``
    untouched.  The file is created by the writer, so it gets the usual permissions (umask),
    not ``mkstemp``'s private ones."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a binary file at a temp path next to ``path``, fsync it, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp directory next to ``path`` to fill; when the block ends it replaces
    ``path`` whole (an existing one is moved aside first and deleted after), readable by all
    (``mkdtemp`` makes it private; bundles and tokenizers are shared).  If the block raises, the
    temp directory is deleted and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, old)  # a directory may replace an empty one
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def json_text(data: dict, default: Callable[[Any], Any] | None = None) -> str:
    """The project's JSON layout (indented, sorted keys, final newline); raises before any I/O on
    values it cannot serialise, so a caller can check that first and write later."""
    return json.dumps(data, indent=2, sort_keys=True, default=default) + "\n"


def write_json_atomic(path: str | os.PathLike, data: dict, default: Callable[[Any], Any] | None = None) -> None:
    """``data`` as :func:`json_text`; serialised before anything touches the disk."""
    text = json_text(data, default)
    atomic_write(path, lambda f: f.write(text.encode()))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (``hashlib.file_digest`` needs Python 3.11)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
