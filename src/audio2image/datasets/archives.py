"""Unpacking downloaded archives safely and resumably: every member is checked before anything is written, and
members that could land outside the destination (absolute paths, `..`, links, devices) are refused.

    >>> safe_extract_zip(Path("mtat/mp3.zip"), Path("mtat/mp3"))  # the names of the files it holds
"""
from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, NamedTuple

from audio2image.errors import UserError
from audio2image.util import progress as _progress_bar  # the name `progress` is a flag in our API

CHUNK = 1 << 20  # bytes per read and write


class UnsafeArchiveError(UserError, RuntimeError):
    """An archive member that could be written outside the destination, or is a link or a special file."""


def _member_target(name: str, root: Path) -> Path:
    """Where an archive member goes under `root`; UnsafeArchiveError if it could escape `root`."""
    # Split on both separators: a Windows-made archive may use backslashes.
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not name or name.startswith(("/", "\\")) or name[1:2] == ":":  # last: a Windows drive, C:...
        raise UnsafeArchiveError(f"Refusing to extract member {name!r}: it has an absolute path.")
    if ".." in parts:
        raise UnsafeArchiveError(f"Refusing to extract member {name!r}: it contains a '..' component.")
    target = root.joinpath(*[p for p in parts if p not in ("", ".")])
    # realpath also catches a symlink that already sits inside root and points elsewhere.
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
        raise UnsafeArchiveError(f"Refusing to extract member {name!r}: it resolves outside {root}.")
    return target


def _write_member(source, target: Path, bar) -> None:
    """Copy one member to `target` via a temporary name, so a killed run never leaves a
    full-looking but truncated file that the size check would then skip."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".extracting")
    with open(tmp, "wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            bar.update(len(chunk))
    os.replace(tmp, target)


def _already_extracted(target: Path, size: int) -> bool:
    return target.is_file() and target.stat().st_size == size


class _Member(NamedTuple):
    """One archive member as both formats describe it, with where it goes."""

    name: str
    size: int
    is_dir: bool
    target: Path
    open: Callable  # () -> a readable binary file of the member's bytes


def safe_extract_zip(archive: Path, dest: Path, progress: bool = True) -> list[str]:
    """Extract a zip into `dest` after checking every member; returns the file members' names.

    Files already present with the right size are skipped, so an interrupted extraction resumes.
    """
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        members = [_Member(info.filename, info.file_size, info.is_dir(), _check_zip_member(info, dest),
                           lambda info=info: zf.open(info)) for info in zf.infolist()]
        return _extract(members, dest, Path(archive).name, progress)


def _check_zip_member(info: zipfile.ZipInfo, dest: Path) -> Path:
    mode = info.external_attr >> 16  # Unix mode bits, set by Unix zip tools
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"Refusing to extract member {info.filename!r}: it is a symbolic link.")
    return _member_target(info.filename, dest)


def safe_extract_tar(archive: Path, dest: Path, progress: bool = True) -> list[str]:
    """Extract a tar (any compression) into `dest` after checking every member.

    Only regular files and directories are allowed; links, devices and fifos are refused. Files
    are written by this code (never by tarfile.extract), so no owner, mode or link from the archive
    is ever applied. Files already present with the right size are skipped. Returns file names.
    """
    dest = Path(dest)
    with tarfile.open(archive, "r:*") as tf:
        members = [_Member(m.name, m.size, m.isdir(), _check_tar_member(m, dest), lambda m=m: tf.extractfile(m))
                   for m in tf.getmembers()]
        return _extract(members, dest, Path(archive).name, progress)


def _check_tar_member(member: tarfile.TarInfo, dest: Path) -> Path:
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        raise UnsafeArchiveError(f"Refusing to extract member {member.name!r}: it is a {kind} to {member.linkname!r}.")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"Refusing to extract member {member.name!r}: it is a device, fifo or other special file.")
    return _member_target(member.name, dest)


def _extract(members: list[_Member], dest: Path, name: str, progress: bool) -> list[str]:
    """Write checked members (every check has passed before this writes anything); the files' names."""
    dest.mkdir(parents=True, exist_ok=True)
    files = [m for m in members if not m.is_dir]
    for member in members:
        if member.is_dir:
            member.target.mkdir(parents=True, exist_ok=True)
    with _bar(progress, sum(m.size for m in files), name) as bar:
        for member in files:
            if _already_extracted(member.target, member.size):
                bar.update(member.size)
                continue
            with member.open() as source:
                _write_member(source, member.target, bar)
    return [m.name for m in files]


def _bar(show: bool, total: int, name: str):
    return _progress_bar(enabled=show, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"extract {name}")
