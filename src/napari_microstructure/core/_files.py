"""Writing files safely: atomic replacement and one clear message for OS failures.

Every writer of the package (model files, TIFF micrographs, probability maps,
EBSD map outputs) writes to a temporary name in the destination folder and
renames it over the destination only when the whole file is written, so a
failed or interrupted write never leaves a half-written file and never touches
a file the user already had. A failure of the operating system (folder missing
or not writable, disk full, read-only file system) becomes a
:class:`~napari_microstructure.core.errors.MicrostructureError` that names the
file, the problem and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Type, Union

from .errors import MicrostructureError

PathLike = Union[str, os.PathLike]

_PROBLEMS = {
    errno.ENOSPC: ("the disk is full", "free some space or choose another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose another disk"),
    errno.EACCES: ("permission denied", "choose a folder you may write to, or change its permissions"),
    errno.EPERM: ("the operation is not permitted", "choose a folder you may write to"),
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk"),
    errno.ENOENT: ("the folder does not exist", "create it first or choose another path"),
    errno.EISDIR: ("it is a folder", "give a file name inside it, e.g. FOLDER/name"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter name"),
}


#: what NumPy's ``tofile`` (used by tifffile) raises on a short write: an OSError without errno
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def os_error_message(exc: OSError, path: Optional[PathLike], action: str) -> str:
    """One line for an OS failure: ``cannot <action> '<path>': <problem>; <fix>``.

    ``path`` None (the failing file is unknown): ``cannot <action>: <problem>; <fix>``.
    A short write (all a full disk lets through) counts as a full disk.
    """
    code = getattr(exc, "errno", None)
    if code is None and _SHORT_WRITE.match(str(exc).strip()):
        code = errno.ENOSPC
    problem, fix = _PROBLEMS.get(code, (exc.strerror or exc.__class__.__name__,
                                        "check the path, the permissions and the free disk space"))
    if code == errno.ENOSPC and path is not None:
        try:
            free = shutil.disk_usage(Path(path).parent).free
            problem += f" ({free / 1e6:.1f} MB free)"
        except OSError:
            pass
    where = "" if path is None else f" {str(path)!r}"
    return f"cannot {action}{where}: {problem}; {fix}"


def check_output_file(path: PathLike, what: str = "file") -> Path:
    """Check, before any work, that ``path`` can be written: folder exists, is writable, is not a folder.

    Raises
    ------
    MicrostructureError
        Naming the problem and the fix.
    """
    path = Path(path)
    if path.is_symlink() and not path.is_dir():
        path = path.resolve()  # write the file the link points to and keep the link
    if path.exists() and not path.is_dir() and not path.is_file():
        raise MicrostructureError(
            f"cannot write the {what} to {str(path)!r}: it is a device or other special file, which a "
            "written file would replace; give the path of a regular file"
        )
    if path.is_dir():
        raise MicrostructureError(
            f"cannot write the {what} to {str(path)!r}: it is a folder; give a file name inside it, "
            f"e.g. {str(path / 'name')!r}"
        )
    parent = path.parent
    if not parent.exists():
        raise MicrostructureError(
            f"cannot write the {what} to {str(path)!r}: folder {str(parent)!r} does not exist; "
            "create it first or choose another path"
        )
    if not parent.is_dir():
        raise MicrostructureError(
            f"cannot write the {what} to {str(path)!r}: {str(parent)!r} is a file, not a folder; "
            "check the path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MicrostructureError(
            f"cannot write the {what} to {str(path)!r}: permission denied in folder "
            f"{str(parent)!r}; choose a folder you may write to, or change its permissions"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise MicrostructureError(
            f"cannot write the {what} to {str(path)!r}: the file exists and is read-only; "
            "choose another name or make it writable"
        )
    return path


def probe_folder(path: PathLike, what: str = "file", n_bytes: int = 1 << 16) -> None:
    """Write (and remove) a small temporary file beside ``path``, before any long work.

    A read-only file system, a folder without write permission or a disk
    already full is then found at once, not after a long computation. A disk
    with a little space left can still fill up later: the writers report that
    when it happens.

    Raises
    ------
    MicrostructureError
        Naming the problem and the fix.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-probe-", dir=str(path.parent))
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(n_bytes))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise MicrostructureError(os_error_message(exc, path, f"write the {what} to")) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: PathLike, what: str = "file", suffix: str = "",
                error: Type[MicrostructureError] = MicrostructureError) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it
    was; an :class:`OSError` is re-raised as ``error`` (a
    :class:`MicrostructureError`) naming the problem and the fix. The file gets
    the usual permissions (``0o666`` less the umask).
    """
    try:
        path = check_output_file(path, what)
    except MicrostructureError as exc:
        raise error(str(exc)) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or path.suffix, dir=str(path.parent))
        os.close(fd)
    except OSError as exc:
        raise error(os_error_message(exc, path, f"write the {what} to")) from exc
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise error(os_error_message(exc, path, f"write the {what} to")) from exc
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
