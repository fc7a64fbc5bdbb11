"""Output folders: the toolkit deletes or overwrites only what it can prove it wrote.

Every folder a command writes carries a marker file, ``.cifake-output.json``, with the kind
of output (``dataset``, ``run``, ``gradcam`` ...) and, once complete, the list of files the
toolkit wrote there. The rules:

- a new or empty folder becomes an output folder (the marker is written first);
- a marked folder of the same kind is resumed in place (:func:`claim`) or replaced
  (:class:`Replacement`, only with the caller's permission, e.g. ``--overwrite``);
- anything else (a file, a non-empty folder without the marker, a folder of another kind,
  a file the marker does not list) is refused with one line naming the path.

One writer per output folder: every command that writes one holds an exclusive lock on it for
the call (:func:`output_lock`, :func:`writes`): a lock file beside the folder
(``.NAME.cifake-lock``, holding the writer's PID), locked with ``fcntl.flock`` on POSIX and
``msvcrt.locking`` on Windows. The system drops the lock when the process ends, killed or
not, so a stale file never blocks; a second writer is refused with one line naming the
folder and the other process. The processes of one sharded build share their folder (a
shared lock), and any other writer is refused.

Replacement is atomic: the new output is written into a marked staging folder beside the
target (``.NAME.cifake-staging-PID``) and swapped in by two renames once complete, so a failed
or killed run leaves the previous output as it was; the next run removes the stale staging
folder (and finishes or undoes an interrupted swap) without needing ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from typing_extensions import Self

from cifake_hub import __version__
from cifake_hub.errors import CifakeError, CorruptFileError, OutputFolderError

MARKER = ".cifake-output.json"
_STAGING = ".cifake-staging-"
_OLD = ".cifake-old"
_LOCK = ".cifake-lock"
F = TypeVar("F", bound=Callable[..., Any])
_held: dict[Path, list[Any]] = {}  # folder -> [open lock file, depth]: locks are reentrant


def lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{_LOCK}"


def _try_lock(handle: Any, shared: bool) -> bool:
    if sys.platform == "win32":  # no shared mode there: every writer is exclusive
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Wait until this process alone holds the lock file ``path``: for short critical sections
    that processes sharing a folder take in turn (POSIX flock, Windows msvcrt)."""
    with open(path, "a+") as handle:
        while not _try_lock(handle, shared=False):
            time.sleep(0.05)
        yield


@contextlib.contextmanager
def output_lock(path: str | Path, what: str = "--out", shared: bool = False) -> Iterator[Path]:
    """Hold the writer's lock of the output folder ``path`` (see the module docstring)."""
    folder = Path(os.path.abspath(output_path(path, what)))
    if folder in _held:
        _held[folder][1] += 1
        try:
            yield folder
        finally:
            _held[folder][1] -= 1
        return
    handle = _acquire(lock_path(folder), folder, what, shared)
    _held[folder] = [handle, 1]
    try:
        yield folder
    finally:
        _held[folder][1] -= 1
        if _held[folder][1] == 0:
            del _held[folder]
            if not shared:
                # Removed while still locked; a writer that opened it meanwhile sees that
                # it is no longer the file at that path and starts again (_acquire).
                with contextlib.suppress(OSError):
                    os.unlink(handle.name)
            handle.close()


def _acquire(lock: Path, folder: Path, what: str, shared: bool) -> Any:
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock, "a+")  # noqa: SIM115 - held until the lock is released
        except PermissionError:
            if not folder.is_dir() or lock.parent != folder.parent:
                raise OutputFolderError(
                    f"cannot write beside {what} {folder} (no write permission in "
                    f"{folder.parent}); give a folder where you may write"
                ) from None
            # A folder the user may write in a parent they may not: the lock goes inside.
            lock = folder / _LOCK
            continue
        except OSError as exc:
            raise OutputFolderError(
                f"cannot write beside {what} {folder}: {exc.strerror} ({lock.parent}); give "
                "a folder where you may write"
            ) from exc
        if not _try_lock(handle, shared):
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise OutputFolderError(
                f"{what} {folder} is being written by another cifake process (PID {pid}); "
                "wait for it to finish, or give another folder"
            )
        try:
            same = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    if not shared:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    return handle


def writes(
    *arguments: str, shared: Callable[..., bool] | None = None, finishes: str | None = None
) -> Callable[[F], F]:
    """Hold :func:`output_lock` on the folders the named arguments give (``"out"``, or an
    attribute path such as ``"config.out"``; None is skipped) for the whole call. With
    ``finishes`` (a kind), a folder of that kind written in place (:func:`claim`) is marked
    complete, with its files, when the call returns."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folders = []
            for name in arguments:
                head, *attrs = name.split(".")
                value = bound.arguments[head]
                for attr in attrs:
                    value = getattr(value, attr)
                if value is not None:
                    folders.append(value)
            share = bool(shared(*args, **kwargs)) if shared is not None else False
            with contextlib.ExitStack() as stack:
                for folder in folders:
                    stack.enter_context(output_lock(folder, shared=share))
                before = {Path(f): _state(Path(f)) for f in folders} if finishes else {}
                for folder in before:
                    _mark(folder, str(finishes), complete=False)  # whole again at the end
                try:
                    result = fn(*args, **kwargs)
                except CifakeError:
                    for folder, (marker, files) in before.items():
                        if marker is not None and _state(folder)[1] == files:
                            # Refused before it wrote anything: the folder is as it was (an
                            # interrupted or crashed call leaves it marked as not whole).
                            atomic_write_text(folder / MARKER, marker)
                    raise
                for folder in before:
                    _mark(folder, str(finishes), complete=True)
                return result

        return call  # type: ignore[return-value]

    return decorate


class OutputFolder:
    """A folder of one kind that the toolkit writes; subclasses own its file names."""

    KIND: ClassVar[str]  # its kind in the marker
    WHAT: ClassVar[str]  # how errors name it

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def require_ours(self) -> Self:
        """This folder, when cifake wrote it (only then may cifake write into it)."""
        require_output(self.path, self.KIND, self.WHAT)
        return self


def output_path(path: str | Path, what: str = "--out") -> Path:
    """``path`` as an output folder path; refuses an empty string (it would mean the cwd)."""
    if not str(path).strip():
        raise OutputFolderError(f"{what} is empty; give a folder name, e.g. {what} ./cifake")
    return Path(path)


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder``, or None when it has none (or an unreadable one)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "kind" in marker else None


def require_output(folder: str | Path, kind: str, what: str) -> Path:
    """``folder`` when it is a ``kind`` output folder of ours; refuses to write into any other."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None or marker["kind"] != kind:
        found = "no cifake-hub marker" if marker is None else f"a {marker['kind']} output"
        raise OutputFolderError(
            f"{what} {folder} is not a {kind} folder written by cifake-hub ({found}, "
            f"{MARKER}); cifake writes into folders it made only"
        )
    require_writable(folder, what)
    return folder


def require_writable(folder: Path, what: str = "--out") -> None:
    """Refuse, before any work, a folder this process may not write into."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputFolderError(
            f"{what} {folder} is not writable (read-only, or owned by another user); give a "
            "folder you may write into, or change its permissions"
        )


def record_file(folder: Path, rel: str) -> None:
    """List ``rel`` in a finished output folder's marker: a file the toolkit added later (a
    card, say) that a replacement of the folder may then remove."""
    marker = read_marker(folder)
    if marker is None or "files" not in marker or rel in marker["files"]:
        return
    extra = {k: v for k, v in marker.items() if k not in ("kind", "tool", "version")}
    extra["files"] = sorted([*marker["files"], rel])
    _write_marker(folder, marker["kind"], **extra)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``path`` so that readers see the old or the new content, never a half file (and
    no temporary file is left when the write fails)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def printable(path: str | Path) -> str:
    """A file name as text that every writer accepts: bytes that are not UTF-8 (a name made
    on another system) become ``\\xNN`` escapes instead of failing the CSV, JSON or Parquet
    writer."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def read_json(path: str | Path) -> Any:
    """The JSON record in ``path``; a damaged one (cut short, edited, not text) is one
    error line naming the file, never a traceback."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        problem = "is not text"
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    raise CorruptFileError(
        f"{path} {problem}; it was damaged after cifake wrote it: restore it, or run the "
        "command that wrote it again into a new folder"
    )


def json_text(data: Any, indent: int | None = 1) -> str:
    """Standard JSON (NaN and infinities become null: other tools reject them), newline-ended."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False) + "\n"


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def _is_marker(rel: str) -> bool:
    """The marker, one being written by a parallel process (torchrun ranks claim the same
    folder at once), or the lock file of a folder inside (``evaluation/`` of a run)."""
    name = rel.rsplit("/", 1)[-1]
    return rel == MARKER or rel.startswith(f".{MARKER}.") or name.endswith(_LOCK)


def _write_marker(folder: Path, kind: str, **extra: Any) -> None:
    body = {"kind": kind, "tool": "cifake-hub", "version": __version__, **extra}
    atomic_write_text(folder / MARKER, json.dumps(body, indent=1, sort_keys=True) + "\n")


def _state(folder: Path) -> tuple[str | None, dict[str, int]]:
    """(the marker's text, each other file's modification time): enough to tell whether a
    call changed anything in the folder."""
    marker = folder / MARKER
    text = marker.read_text(encoding="utf-8") if marker.is_file() else None
    files = {}
    if folder.is_dir():
        for p in folder.rglob("*"):
            rel = p.relative_to(folder).as_posix()
            if not _is_marker(rel) and not p.is_dir():
                files[rel] = p.lstat().st_mtime_ns
    return text, files


def _mark(folder: Path, kind: str, complete: bool) -> None:
    """A folder written in place is whole (its marker says so and lists its files, what a
    later replacement may remove), or being written again (the list stays its own)."""
    marker = read_marker(folder)
    if marker is None or marker["kind"] != kind or marker.get("complete", False) == complete:
        return
    files = _files(folder) if complete else marker.get("files", [])
    _write_marker(folder, kind, complete=complete, files=files)


def claim(path: str | Path, kind: str, what: str = "--out") -> Path:
    """Use ``path`` as a ``kind`` output folder written in place (resumable outputs).

    A new or empty folder is marked; a folder already marked as ``kind`` is resumed.
    """
    folder = output_path(path, what)
    _recover(folder)
    if folder.exists() or folder.is_symlink():
        _refuse_foreign(folder, kind, what)
        require_writable(folder, what)
        if read_marker(folder) is not None:
            return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"cannot create {what} {folder}: {exc.strerror}") from exc
    _write_marker(folder, kind, complete=False)
    return folder


def _refuse_foreign(folder: Path, kind: str, what: str) -> None:
    if not folder.is_dir():
        raise OutputFolderError(
            f"{what} {folder} exists and is not a folder; give a new or empty folder"
        )
    marker = read_marker(folder)
    if marker is None:
        if any(not _is_marker(p.name) for p in folder.iterdir()):
            raise OutputFolderError(
                f"{what} {folder} is not empty and was not written by cifake-hub (it has no "
                f"{MARKER}); give a new or empty folder"
            )
    elif marker["kind"] != kind:
        raise OutputFolderError(
            f"{what} {folder} holds a cifake-hub {marker['kind']} output, not a {kind}; "
            "give another folder"
        )


def check_replaceable(
    path: str | Path, kind: str, *, overwrite: bool, keep: tuple[str, ...] = (), what: str = "--out"
) -> Path:
    """Refuse, before any work, to replace ``path`` unless the toolkit wrote all of it."""
    folder = output_path(path, what)
    if not (folder.exists() or folder.is_symlink()):
        return folder
    _refuse_foreign(folder, kind, what)
    if os.path.ismount(folder):
        raise OutputFolderError(
            f"{what} {folder} is a mount point, and cifake replaces an output folder whole; "
            "give a folder inside it"
        )
    marker = read_marker(folder)
    if marker is None:
        return folder  # an empty folder
    if marker.get("complete") and not overwrite:
        raise OutputFolderError(
            f"{what} {folder} already holds a {kind} written by cifake-hub; pass --overwrite "
            "to replace it, or give another folder"
        )
    listed = set(marker.get("files", ()))
    # Folders that hold a listed file, or that the toolkit left empty.
    folders = {"/".join(rel.split("/")[:k]) for rel in listed for k in range(1, rel.count("/") + 1)}
    folders |= set(marker.get("empty_folders", ()))
    unlisted = []  # (a folder or link, path): the first user file is named, else the first
    for root, dirs, files in os.walk(folder):  # links are entries, never followed
        for name in sorted(dirs) + sorted(files):
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if rel in listed or rel.split("/")[0] in keep or _is_marker(rel):
                continue
            if name in dirs and rel in folders and not path.is_symlink():
                continue
            unlisted.append((name in dirs or path.is_symlink(), path))
    if unlisted:
        _, path = min(unlisted, key=lambda item: item[0])
        kind_of = " (a link)" if path.is_symlink() else " (a folder)" if path.is_dir() else ""
        raise OutputFolderError(
            f"{path}{kind_of} was not written by cifake-hub; move it out of {folder} before "
            "replacing it, or give another folder"
        )
    return folder


class Replacement:
    """A marked staging folder that replaces ``path`` atomically when committed.

    Use as a context manager (``with Replacement(...) as staged:``): on success the staging
    folder is swapped in, on an exception it is removed and ``path`` is untouched. ``keep``
    names top-level entries of the old output that move into the new one (e.g. a generator's
    checkpoints).
    """

    def __init__(
        self,
        path: str | Path,
        kind: str,
        *,
        overwrite: bool,
        keep: tuple[str, ...] = (),
        what: str = "--out",
    ):
        self.target = output_path(path, what)
        self.kind, self.keep, self.what = kind, keep, what
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(output_lock(self.target, what))
        try:
            _recover(self.target)
            check_replaceable(self.target, kind, overwrite=overwrite, keep=keep, what=what)
        except BaseException:
            self._lock.close()
            raise
        self.staging = self.target.parent / f".{self.target.name}{_STAGING}{os.getpid()}"
        shutil.rmtree(self.staging, ignore_errors=True)
        try:
            self.staging.mkdir(parents=True)
        except OSError as exc:
            self._lock.close()
            raise OutputFolderError(f"cannot create {self.staging}: {exc.strerror}") from exc
        _write_marker(self.staging, kind, complete=False)

    def commit(self) -> Path:
        try:
            # Something may have appeared there meanwhile.
            check_replaceable(
                self.target, self.kind, overwrite=True, keep=self.keep, what=self.what
            )
            _swap(self.staging, self.target, self.kind, self.keep)
        finally:
            self._lock.close()
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self._lock.close()

    def __enter__(self) -> Path:
        return self.staging

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise


def _files(folder: Path) -> list[str]:
    return sorted(
        rel
        for p in folder.rglob("*")
        if not p.is_dir() and not _is_marker(rel := p.relative_to(folder).as_posix())
    )


def _swap(staged: Path, folder: Path, kind: str, keep: tuple[str, ...]) -> None:
    carried = [name for name in keep if (folder / name).exists()]
    # Written before the moves: a run killed between them is undone by _recover.
    _write_marker(staged, kind, complete=False, carried=carried)
    for name in carried:
        os.rename(folder / name, staged / name)
    empty = sorted(
        p.relative_to(staged).as_posix()
        for p in staged.rglob("*")
        if p.is_dir() and not p.is_symlink() and not any(p.iterdir())
    )
    extra = {"empty_folders": empty} if empty else {}
    _write_marker(staged, kind, complete=True, files=_files(staged), **extra)
    if folder.is_dir() and read_marker(folder) is None:
        folder.rmdir()  # an empty folder of the user's: nothing to keep
    if folder.exists():
        old = folder.parent / f".{folder.name}{_OLD}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(folder, old)
        os.rename(staged, folder)
        shutil.rmtree(old)
    else:
        os.rename(staged, folder)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover(folder: Path) -> None:
    """Undo what a killed run left beside ``folder``: an interrupted swap, staging folders."""
    parent = folder.parent
    if not parent.is_dir():
        return
    old = parent / f".{folder.name}{_OLD}"
    if read_marker(old) is not None:
        if folder.exists():
            shutil.rmtree(old)  # the swap finished; only the old copy's removal was lost
        else:
            os.rename(old, folder)  # killed between the two renames: the old output returns
    for staged in parent.glob(f".{folder.name}{_STAGING}*"):
        pid = staged.name.rsplit("-", 1)[-1]
        marker = read_marker(staged)
        if marker is None or (pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid))):
            continue  # not ours, or another run still writing it
        for name in marker.get("carried", ()):
            if (staged / name).exists() and not (folder / name).exists() and folder.is_dir():
                os.rename(staged / name, folder / name)
        shutil.rmtree(staged)


def portable_record(data: Any, names: dict[str, str]) -> Any:
    """``data`` (a JSON record) with every entry named in ``names`` (e.g. ``dataset``,
    ``model``) that holds a local path replaced by the value given for it: local paths mean
    nothing elsewhere, and tell where the user keeps files."""
    if isinstance(data, dict):
        return {
            k: names[k]
            if k in names and isinstance(v, str) and _is_local(v)
            else portable_record(v, names)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [portable_record(v, names) for v in data]
    return data


def _is_local(value: str) -> bool:
    return Path(value).is_absolute() or Path(value).exists()
