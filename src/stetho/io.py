"""Atomic artifact writing: a crash never leaves a half-written model, table or report.

Every writer goes to a temporary sibling in the same folder and is renamed over the target
(``os.replace`` is atomic on POSIX and Windows within one file system). Temporaries carry the
host and process id in their name (:data:`TEMP_SUFFIX`); the next writer to a folder removes
those of a killed command (:func:`remove_stale_temporaries`). The guards
:func:`check_not_input` and :func:`check_replaceable_dir` keep commands from overwriting or
deleting what they read or what they did not write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class ArtifactError(ValueError):
    """A model, checkpoint, pipeline or run file that cannot be used.

    The message names the file, says what is wrong with it and how to recover (retrain,
    re-export, restore the folder). The CLI prints it on one line and exits with code 2.
    """

    def __init__(self, path: str | Path, problem: str, remedy: str) -> None:
        self.path = Path(path)
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{path}: {problem}; {remedy}")


# --- temporaries: named so that a later command can tell a killed writer's leftovers -------

#: Every temporary file or folder of ours is named ``.<target>.<host>-<pid>.<random>`` plus
#: this suffix: the host and process that made it, so that a later writer can tell a
#: leftover of a killed command (its process is gone) from one in use.
TEMP_SUFFIX = ".stetho.tmp"

_TEMP_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+"
    + re.escape(TEMP_SUFFIX)
    + "$"
)

#: Folders already cleaned by this process (each is looked at once, not at every write).
_CLEANED: set[str] = set()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{_host()}-{os.getpid()}."


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove this host's leftover temporaries (see :data:`TEMP_SUFFIX`) in ``folder`` whose
    process is gone, and log each; returns what was removed.

    Only names of our pattern are touched, and only when the process that made them no
    longer exists on this host, so a concurrent writer's files and anything a user owns are
    never removed. :func:`atomic_path` and :func:`temporary_dir` call it once per folder and
    process, so the next writer to a folder clears a killed command's leftovers.
    """
    folder = Path(folder)
    removed: list[Path] = []
    host = _host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["host"] != host or not _process_gone(int(match["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            logger.warning("%s: cannot remove a killed command's leftover: %s", path, exc)
            continue
        removed.append(path)
    if removed:
        logger.warning(
            "%s: removed %d leftover temporar%s of a killed stetho command: %s",
            folder,
            len(removed),
            "y" if len(removed) == 1 else "ies",
            ", ".join(p.name for p in removed),
        )
    return removed


def _clean_once(folder: Path) -> None:
    key = os.path.realpath(folder)
    if key not in _CLEANED:
        _CLEANED.add(key)
        remove_stale_temporaries(folder)


def temporary_dir(target: str | Path) -> Path:
    """Create an empty temporary folder beside ``target`` (same file system, so it can be
    renamed into place), named so that a later command removes it if this one is killed."""
    target = _named(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(target.parent)
    return Path(
        tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=TEMP_SUFFIX, dir=target.parent)
    )


def _named(path: str | Path) -> Path:
    """``path`` with a real last component (``.`` or ``..`` resolved), for naming siblings."""
    path = Path(path)
    return path.resolve() if path.name in ("", ".", "..") else path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``."""
    path = _named(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates owner-only files; artifacts get the permissions of an ordinary file.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# --- guards: nothing a user points a command at is overwritten ------------------------------


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_not_input(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output file that is one of the command's input files.

    ``stetho predict list.csv --out list.csv`` would replace the table it reads. Raises
    ``ValueError`` (exit code 2 from the CLI) naming both and the way out. Links and
    different spellings of one file (``./a.csv``, hard links) count as the same file.
    """
    out = Path(out)
    for given in inputs:
        source = Path(given)
        if _same(out, source):
            raise ValueError(
                f"--out {out} is also an input ({source}): writing it would overwrite that "
                "input; choose another output file"
            )


def check_replaceable_dir(
    target: str | Path,
    *,
    inputs: Iterable[str | Path],
    owned_marker: str,
    owned_files: Collection[str] | None = None,
) -> None:
    """Refuse to replace the folder ``target`` unless it is safe to delete.

    Raises ``ValueError`` (exit code 2 from the CLI) when ``target``

    * is a file (or anything but a folder);
    * is, contains or lies inside one of ``inputs`` (the files and folders the command
      reads): ``stetho export RUN --out RUN`` or ``--out`` the run's parent, or ``.``;
    * exists, is not empty and has no ``owned_marker`` file (a file name the command writes
      into every folder it makes, proving the folder is its own);
    * holds entries other than ``owned_files`` (when given) and the marker: files the
      command did not write, that replacing the folder would delete.

    A missing or empty ``target`` passes. Call it before the work starts.
    """
    target = Path(target)
    where = target.resolve()
    if where.exists() and not where.is_dir():
        raise ValueError(f"{target}: exists and is not a folder; choose another output folder")
    for given in inputs:
        source = Path(given).resolve()
        if where == source or source.is_relative_to(where):
            raise ValueError(
                f"{target}: contains the input {given}; replacing it would delete that "
                "input; choose another output folder"
            )
        if where.is_relative_to(source):
            raise ValueError(
                f"{target}: lies inside the input {given}; choose an output folder outside it"
            )
    if not where.exists():
        return
    names = {p.name for p in where.iterdir()}
    if not names:
        return
    if owned_marker not in names:
        raise ValueError(
            f"{target}: exists and was not written by this command (no {owned_marker}); "
            "replacing it would delete its files: choose another output folder or remove it"
        )
    if owned_files is not None:
        foreign = sorted(names - set(owned_files) - {owned_marker})
        if foreign:
            shown = ", ".join(foreign[:5]) + (
                f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            )
            raise ValueError(
                f"{target}: holds files this command did not write ({shown}); replacing it "
                "would delete them: move them out or choose another output folder"
            )


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_table(df: Any, path: str | Path) -> None:
    """Write a pandas DataFrame as parquet or csv (by suffix), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix in {".csv", ".txt"}:
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(
                f"{path}: unsupported table format {path.suffix!r}; use .csv or .parquet"
            )


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one line; a line is written in one call so a crash loses at most that line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
