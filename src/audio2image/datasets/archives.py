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

from audio2image.util import progress as _progress_bar  # the name `progress` is a flag in our API

CHUNK = 1 << 20  # bytes per read and write


class UnsafeArchiveError(RuntimeError):
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


def safe_extract_zip(archive: Path, dest: Path, progress: bool = True) -> list[str]:
    """Extract a zip into `dest` after checking every member; returns the file members' names.

    Files already present with the right size are skipped, so an interrupted extraction resumes.
    """
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan = [(info, _check_zip_member(info, dest)) for info in infos]  # all checks before any write
        dest.mkdir(parents=True, exist_ok=True)
        files = [(info, target) for info, target in plan if not info.is_dir()]
        for info, target in plan:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
        with _bar(progress, sum(i.file_size for i, _ in files), Path(archive).name) as bar:
            for info, target in files:
                if _already_extracted(target, info.file_size):
                    bar.update(info.file_size)
                    continue
                with zf.open(info) as source:
                    _write_member(source, target, bar)
    return [info.filename for info, _ in files]


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
        members = tf.getmembers()
        plan = [(m, _check_tar_member(m, dest)) for m in members]  # all checks before any write
        dest.mkdir(parents=True, exist_ok=True)
        files = [(m, target) for m, target in plan if m.isfile()]
        for member, target in plan:
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
        with _bar(progress, sum(m.size for m, _ in files), Path(archive).name) as bar:
            for member, target in files:
                if _already_extracted(target, member.size):
                    bar.update(member.size)
                    continue
                with tf.extractfile(member) as source:
                    _write_member(source, target, bar)
    return [m.name for m, _ in files]


def _check_tar_member(member: tarfile.TarInfo, dest: Path) -> Path:
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        raise UnsafeArchiveError(f"Refusing to extract member {member.name!r}: it is a {kind} to {member.linkname!r}.")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"Refusing to extract member {member.name!r}: it is a device, fifo or other special file.")
    return _member_target(member.name, dest)


def _bar(show: bool, total: int, name: str):
    return _progress_bar(enabled=show, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"extract {name}")
