"""Download and unpack MagnaTagATune and Caltech-256, safely and resumably.

Everything here uses the standard library (urllib, hashlib, zipfile, tarfile) plus tqdm:

* `download_file` streams a URL into `<dest>.part`, resumes it with an HTTP Range request after a
  dropped connection or an earlier interrupted run, verifies a sha256/md5 digest and only then renames
  the file into place, so a file at `dest` is always complete and verified.
* `safe_extract_zip` / `safe_extract_tar` (datasets/archives.py) check every member before writing anything and
  refuse members that could land outside the destination (absolute paths, `..`, links, devices).
* `download_mtat` / `download_caltech256` assemble those into one call per dataset, leave a completion
  marker `dest/.download.json`, and do nothing on a second call.

Each dataset needs its own `dest` folder, since the marker file name is the same for both.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from audio2image.datasets.archives import safe_extract_tar, safe_extract_zip
from audio2image.errors import UserError
from audio2image.util import log, read_json_or_none, write_json
from audio2image.util import progress as _progress_bar  # the name `progress` is a flag in our API

MTAT_BASE_URL = "https://mirg.city.ac.uk/datasets/magnatagatune/"
# No official checksums exist; these are the digests published by p-lambda/jukemir (see FACTS.md).
MTAT_FILES: dict[str, str] = {
    "mp3.zip.001": "f857fe185968773058cc71662c2ef5d8f2d4b7338e3c122cfd52f82dcb9760b9",
    "mp3.zip.002": "fc2e1ec441755556ed1398b1808f1b08b6034372f8bc27394510c0c58cdb52ce",
    "mp3.zip.003": "83a689824c17e82f6eb81cdbc4e4ca239a4cfc1fb41f1a5c80b861caec90450f",
    "annotations_final.csv": "99b94e95825d4fa576386a5367b9c96e0ec636e9f9c240aceb492f4728f68c3c",
    "clip_info_final.csv": "cb6108a10d3a91f0bfd7d2fbec2382559d15f20c8d28093f14e12162a47a3e78",
}
MTAT_ZIP_PARTS = ("mp3.zip.001", "mp3.zip.002", "mp3.zip.003")
CALTECH256_URL = "https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar?download=1"
CALTECH256_MD5 = "67b4f42ca05d46448c6bb8ecd2220f6d"

MARKER_NAME = ".download.json"
CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar.
# Seconds before retry k is 2**k times this; tests set it to 0.
RETRY_DELAY_S = 2.0
USER_AGENT = "audio2image-downloader/1.0 (+python-urllib)"


class DownloadError(UserError, RuntimeError):
    """A download or extraction failed in a way the user must act on; the message says what happened."""


class _TransientError(Exception):
    """A network failure worth retrying (dropped connection, short body, timeout, 5xx)."""


# --------------------------------------------------------------------------------------------------
# Checksums


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks so that multi-GB files need bounded memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _expected_digests(sha256: str | None, md5: str | None) -> dict[str, str]:
    return {algo: value.lower() for algo, value in (("sha256", sha256), ("md5", md5)) if value}


def _first_mismatch(path: Path, expected: dict[str, str]) -> tuple[str, str, str] | None:
    """(algorithm, expected, actual) for the first digest that differs, or None when all match."""
    for algo, want in expected.items():
        got = file_digest(path, algo)
        if got != want:
            return algo, want, got
    return None


# --------------------------------------------------------------------------------------------------
# download_file


def download_file(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60,
) -> Path:
    """Download `url` to `dest`, resuming and retrying, and verify its sha256 and/or md5.

    The body goes to `dest.part` first; `dest` appears (atomically) only once its digest matches.
    An existing `dest` whose digest matches is kept without any request; one that mismatches is
    downloaded again. Without any checksum an existing `dest` is trusted as is.
    `retries` counts failed attempts that made no progress: an attempt that extended the .part file
    before the connection dropped does not use one up, so a long transfer over a flaky link finishes.
    """
    dest = Path(dest)
    expected = _expected_digests(sha256, md5)
    if dest.exists():
        if not expected or _first_mismatch(dest, expected) is None:
            return dest
        log(f"{dest} exists but its checksum does not match; downloading it again.")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_with_retries(url, part, retries=retries, timeout=timeout, show=progress)
    _verify_or_discard(part, dest.name, expected)
    os.replace(part, dest)  # same folder, so the rename is atomic
    return dest


def _fetch_with_retries(url: str, part: Path, *, retries: int, timeout: float, show: bool) -> None:
    failures = 0
    best = _size(part)
    while True:
        try:
            _fetch(url, part, timeout=timeout, show=show)
            return
        except _TransientError as err:
            size = _size(part)
            if size > best:  # progress made: the retry budget is for attempts that go nowhere
                best = size
            else:
                failures += 1
            if failures > retries:
                raise DownloadError(
                    f"Downloading {url} failed after {retries} retries ({err}); "
                    f"run again to resume from the {size} bytes kept in {part}."
                ) from err
            delay = RETRY_DELAY_S * 2 ** min(failures, 5)
            log(f"Download of {part.name[:-5]} interrupted ({err}); resuming at byte {size} in {delay:.0f} s.")
            time.sleep(delay)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _fetch(url: str, part: Path, *, timeout: float, show: bool) -> None:
    """One attempt: append the rest of the body to `part`; raise _TransientError if it stops short."""
    offset = _size(part)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            offset, total = _resume_point(response, offset, part)
            _stream(response, part, offset, total, show)
    except urllib.error.HTTPError as err:
        _handle_http_error(err, url, part, offset)
    except (http.client.HTTPException, ConnectionError, TimeoutError, urllib.error.URLError) as err:
        # Only network errors land here: a local write error (disk full) is an OSError that is
        # neither of these and propagates, since retrying it would not help.
        raise _TransientError(f"{type(err).__name__}: {err}") from err


def _resume_point(response, offset: int, part: Path) -> tuple[int, int | None]:
    """Where this response's body starts in the file, and the full file size if the server says."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range", ""))
        if start == offset:
            if total is None and length is not None:
                total = offset + length
            return offset, total
        part.unlink(missing_ok=True)  # we can't trust where this server resumes; start over on the next attempt
        raise _TransientError(f"server resumed at byte {start} instead of {offset}")
    # 200: the server ignored our Range header (or there was none), so the body is the whole file.
    return 0, length


def _parse_content_range(value: str) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); unknown parts are None."""
    try:
        _unit, _, rest = value.strip().partition(" ")
        span, _, total = rest.partition("/")
        start = int(span.split("-")[0]) if span != "*" else None
        return start, (int(total) if total.isdigit() else None)
    except ValueError:
        return None, None


def _stream(response, part: Path, offset: int, total: int | None, show: bool) -> None:
    # "ab" continues a resumed file; "wb" truncates when the server restarted from byte 0.
    mode = "ab" if offset else "wb"
    written = offset
    name = part.name[: -len(".part")]
    with open(part, mode) as handle, _progress_bar(
        enabled=show, total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name
    ) as bar:
        # read1 returns whatever has arrived; read(CHUNK) would wait to fill 1 MiB and, on a
        # timeout, lose the bytes it had already received.
        while chunk := response.read1(CHUNK):
            handle.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    # http.client returns b"" (not IncompleteRead) when the peer closes early, so check the length.
    if total is not None and written < total:
        raise _TransientError(f"connection closed after {written} of {total} bytes")


def _handle_http_error(err: urllib.error.HTTPError, url: str, part: Path, offset: int) -> None:
    err.close()  # the error doubles as a response whose socket we don't read
    if err.code == 416 and offset:
        # Range not satisfiable: the .part is already complete (checked by the digest next) or
        # longer than the file, in which case it is garbage and we start over.
        _, total = _parse_content_range(err.headers.get("Content-Range", ""))
        if total == offset:
            return
        part.unlink()
        raise _TransientError(f"partial file of {offset} bytes does not fit the server's file") from err
    if err.code >= 500 or err.code in (408, 429):
        raise _TransientError(f"HTTP {err.code} {err.reason}") from err
    raise DownloadError(f"The server answered HTTP {err.code} ({err.reason}) for {url}.") from err


def _verify_or_discard(part: Path, name: str, expected: dict[str, str]) -> None:
    mismatch = _first_mismatch(part, expected)
    if mismatch is None:
        return
    # A wrong body can't be fixed by resuming, so drop it: the next run starts from zero.
    part.unlink()
    algo, want, got = mismatch
    raise DownloadError(
        f"Checksum mismatch for {name}: expected {algo} {want} but got {got}; "
        f"the download was deleted, so run again or check the URL."
    )


# --------------------------------------------------------------------------------------------------
# Datasets


def _count_files(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


def _completed(dest: Path, dataset: str, data_dir: str, extra_files: tuple[str, ...] = ()) -> dict | None:
    """The marker's contents if `dest` holds a finished download of `dataset`, else None."""
    info = read_json_or_none(dest / MARKER_NAME)
    if not isinstance(info, dict):
        return None
    if info.get("dataset") != dataset or not all((dest / f).is_file() for f in extra_files):
        return None
    if _count_files(dest / data_dir) != info.get("n_files"):  # someone deleted or added files
        return None
    return {**info, "root": str(dest)}


def _finish(dest: Path, info: dict) -> dict:
    info = {**info, "root": str(dest), "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(dest / MARKER_NAME, info)
    return info


def _join_url(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def download_mtat(
    dest: Path,
    mirror: str | None = None,
    *,
    checksums: dict[str, str] | None = None,
    progress: bool = True,
) -> dict:
    """Download MagnaTagATune into `dest`: `annotations_final.csv`, `clip_info_final.csv`, `mp3/<0-f>/*.mp3`.

    `mirror` is a base URL holding the five files (default: MTAT_BASE_URL); `checksums` overrides
    the default sha256 per file name. The zip parts are kept (they carry the checksums, so a later
    call can verify and re-extract without the network); the joined mp3.zip is deleted once extracted.
    Returns the marker's contents (root, audio_dir, annotations, clip_info, n_files, ...).
    """
    dest = Path(dest)
    done = _completed(dest, "magnatagatune", "mp3", ("annotations_final.csv", "clip_info_final.csv"))
    if done is not None:
        return done
    base = mirror or MTAT_BASE_URL
    digests = {**MTAT_FILES, **(checksums or {})}
    for name in MTAT_FILES:
        download_file(_join_url(base, name), dest / name, sha256=digests[name], progress=progress)
    joined = _join_parts([dest / p for p in MTAT_ZIP_PARTS], dest / "mp3.zip")
    try:
        members = safe_extract_zip(joined, dest / "mp3", progress=progress)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"The joined archive {joined} is not a valid zip ({err}).") from err
    joined.unlink()  # ~3 GB that the parts and the extracted files already hold
    return _finish(dest, {
        "dataset": "magnatagatune",
        "source": base,
        "sha256": {name: digests[name] for name in MTAT_FILES},
        "audio_dir": str(dest / "mp3"),
        "annotations": str(dest / "annotations_final.csv"),
        "clip_info": str(dest / "clip_info_final.csv"),
        "n_files": _count_files(dest / "mp3"),
        "n_archive_files": len(members),
    })


def _join_parts(parts: list[Path], joined: Path) -> Path:
    """Concatenate split-zip parts into `joined`, streamed; reuse a previous join of the right size."""
    size = sum(p.stat().st_size for p in parts)
    if joined.is_file() and joined.stat().st_size == size:
        return joined  # an earlier run joined it and was interrupted while extracting
    tmp = joined.with_name(joined.name + ".part")
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                shutil.copyfileobj(source, out, CHUNK * 16)
    os.replace(tmp, joined)
    return joined


def download_caltech256(
    dest: Path,
    url: str | None = None,
    *,
    md5: str | None = None,
    progress: bool = True,
) -> dict:
    """Download Caltech-256 into `dest` so that `dest/256_ObjectCategories/NNN.name/*.jpg` exists.

    The md5-verified tar is kept beside it (`dest/256_ObjectCategories.tar`), like the MTAT parts,
    so that a re-extraction needs no network. Returns the marker's contents.
    """
    dest = Path(dest)
    done = _completed(dest, "caltech256", "256_ObjectCategories")
    if done is not None:
        return done
    source = url or CALTECH256_URL
    digest = md5 or CALTECH256_MD5
    archive = download_file(source, dest / "256_ObjectCategories.tar", md5=digest, progress=progress)
    try:
        members = safe_extract_tar(archive, dest, progress=progress)
    except tarfile.TarError as err:
        raise DownloadError(f"The archive {archive} is not a valid tar file ({err}).") from err
    image_dir = dest / "256_ObjectCategories"
    if not image_dir.is_dir():
        raise DownloadError(f"The archive {archive} did not contain a 256_ObjectCategories folder.")
    return _finish(dest, {
        "dataset": "caltech256",
        "source": source,
        "md5": digest.lower(),
        "image_dir": str(image_dir),
        "n_files": _count_files(image_dir),
        "n_archive_files": len(members),
    })
