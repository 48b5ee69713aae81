"""Safe files: atomic writes for ``save``/``save_replay_buffer`` and clear errors on ``load``.

SB3 opens the destination itself and writes into it, so a crash or a full disk half-way leaves a
truncated file where the previous checkpoint was. :func:`atomic_open` writes to a temporary file
beside the destination and renames it over the destination only once everything is on disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import uuid
import zipfile
from collections.abc import Iterator

from stable_baselines3.common.save_util import open_path

#: sb3-dreamer's version, written into every saved model.
VERSION = (pathlib.Path(__file__).parents[1] / "version.txt").read_text().strip()


def _destination(path: str | pathlib.Path, suffix: str) -> pathlib.Path:
    """The file SB3 would write for ``path``: ``suffix`` added when the name has none."""
    path = pathlib.Path(path)
    if path.suffix == "":
        path = path.with_name(f"{path.name}.{suffix}")
    return path


@contextlib.contextmanager
def atomic_open(path: str | pathlib.Path | io.BufferedIOBase, suffix: str) -> Iterator[io.BufferedIOBase]:
    """Yield a binary file to write; on success it replaces ``path`` in one rename.

    File objects are passed through unchanged. For paths the parent folders are created, the
    data goes to a temporary file in the destination's folder (so the rename is atomic), which is
    flushed and synced, then renamed over the destination (through a symlink, keeping an existing
    file's mode). If the write fails, the temporary file is removed and the destination keeps its
    previous content; a process killed mid-write can leave only a ``.<name>.*.tmp`` file behind.
    """
    if not isinstance(path, (str, pathlib.Path)):
        yield path
        return
    target = pathlib.Path(os.path.realpath(_destination(path, suffix)))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    # 0o666 minus the umask, as open() would create it
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file  # type: ignore[misc]
            file.flush()
            os.fsync(file.fileno())
        if target.exists():
            os.chmod(temporary, target.stat().st_mode & 0o7777)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def check_saved_model(
    path: str | pathlib.Path | io.BufferedIOBase, algorithm: str, version: str, required: tuple[str, ...]
) -> dict:
    """Check that ``path`` is an intact SB3 zip saved by sb3-dreamer's ``algorithm``, holding every
    member in ``required``, before SB3 unpickles anything; return its ``data``. Raises ``ValueError``
    naming the file and the problem."""
    name = getattr(path, "name", path)
    file = open_path(path, "r", verbose=0, suffix="zip")  # type: ignore[arg-type]
    start = file.tell() if file.seekable() else None
    try:
        with zipfile.ZipFile(file) as archive:
            members = set(archive.namelist())
            if "data" not in members:
                raise ValueError(f"{name} is not a saved Stable-Baselines3 model: it has no 'data' member.")
            damaged = archive.testzip()  # reads every member and checks its CRC
            if damaged is not None:
                raise ValueError(f"{name} is corrupted: its member {damaged!r} fails the zip checksum.")
            data = json.loads(archive.read("data").decode())
    except zipfile.BadZipFile as error:
        raise ValueError(f"{name} is not a valid zip file (corrupted or truncated?): {error}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} has a corrupted 'data' member: {error}") from error
    finally:
        if start is not None:
            file.seek(start)
        if not isinstance(path, io.BufferedIOBase):
            file.close()
    saved_by = data.get("_sb3_dreamer_algorithm")
    if saved_by != algorithm:
        what = f"by sb3_dreamer's {saved_by}" if saved_by else "by another algorithm or package"
        raise ValueError(f"{name} was saved {what}, not by {algorithm}; load it with the class that saved it.")
    missing = [member for member in required if member not in members]
    if missing:
        saved_version = data.get("_sb3_dreamer_version", "unknown")
        raise ValueError(
            f"{name} is incomplete: it lacks {', '.join(missing)} (saved by sb3-dreamer {saved_version}, "
            f"this is {version})."
        )
    return data
