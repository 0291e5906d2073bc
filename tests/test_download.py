"""Downloads against a local HTTP server: resume, retries, checksums, safe extraction, datasets."""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from audio2image.datasets import download as dl
from audio2image.datasets.archives import UnsafeArchiveError, safe_extract_tar, safe_extract_zip
from audio2image.datasets.download import DownloadError, download_caltech256, download_file, download_mtat
from httpserver import FileServer


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_DELAY_S", 0.0)


@pytest.fixture
def served(tmp_path):
    """A folder served on 127.0.0.1 and holding one 200 kB random file, big.bin."""
    root = tmp_path / "www"
    root.mkdir()
    payload = os.urandom(200_000)
    (root / "big.bin").write_bytes(payload)
    with FileServer(root) as server:
        yield server, payload


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------
# download_file


def test_download_file_plain_and_idempotent(served, tmp_path):
    server, payload = served
    dest = tmp_path / "out" / "big.bin"
    assert download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=True) == dest
    assert dest.read_bytes() == payload
    assert not dest.with_name("big.bin.part").exists()
    download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=False)
    assert len(server.requests) == 1  # the verified file was kept without a request


def test_existing_dest_with_wrong_content_is_downloaded_again(served, tmp_path):
    server, payload = served
    dest = tmp_path / "big.bin"
    dest.write_bytes(b"stale")
    download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=False)
    assert dest.read_bytes() == payload


def test_dropped_connection_resumes_with_range(served, tmp_path):
    server, payload = served
    server.drops["big.bin"] = [50_000]
    dest = tmp_path / "big.bin"
    download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=False, retries=1)
    assert dest.read_bytes() == payload
    ranges = [r.range for r in server.requests_for("big.bin")]
    assert ranges == [None, "bytes=50000-"]
    assert server.requests_for("big.bin")[1].status == 206


def test_timeout_is_retried(served, tmp_path):
    server, payload = served
    server.stalls["big.bin"] = [10_000]
    dest = tmp_path / "big.bin"
    download_file(f"{server.url}/big.bin", dest, md5=hashlib.md5(payload).hexdigest(), progress=False, timeout=0.3)
    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests_for("big.bin")] == [None, "bytes=10000-"]


def test_existing_part_file_resumes_from_its_size(served, tmp_path):
    server, payload = served
    dest = tmp_path / "big.bin"
    dest.with_name("big.bin.part").write_bytes(payload[:30_000])
    download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=False)
    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == ["bytes=30000-"]


def test_complete_part_file_is_verified_without_a_body(served, tmp_path):
    server, payload = served
    dest = tmp_path / "big.bin"
    dest.with_name("big.bin.part").write_bytes(payload)
    download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=False)
    assert dest.read_bytes() == payload
    assert [r.status for r in server.requests] == [416]


def test_wrong_checksum_raises_and_leaves_nothing(served, tmp_path):
    server, payload = served
    dest = tmp_path / "big.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download_file(f"{server.url}/big.bin", dest, sha256=wrong, progress=False)
    message = str(info.value)
    assert "big.bin" in message and wrong in message and sha256(payload) in message
    assert not dest.exists()
    assert not dest.with_name("big.bin.part").exists()


def test_server_without_range_support_restarts(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    payload = os.urandom(100_000)
    (root / "big.bin").write_bytes(payload)
    dest = tmp_path / "big.bin"
    # Garbage in the .part: appending the full body to it would fail the checksum.
    dest.with_name("big.bin.part").write_bytes(b"\0" * 30_000)
    with FileServer(root, range_support=False) as server:
        server.drops["big.bin"] = [0, 40_000]  # and two drops, each forcing a restart from zero
        download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=False)
    assert dest.read_bytes() == payload
    requests = server.requests_for("big.bin")
    assert [r.status for r in requests] == [200, 200, 200]
    assert requests[0].range == "bytes=30000-"


def test_retries_are_bounded(served, tmp_path):
    server, _ = served
    server.drops["big.bin"] = [0] * 10  # headers, then nothing: no attempt makes progress
    with pytest.raises(DownloadError, match="failed after 2 retries"):
        download_file(f"{server.url}/big.bin", tmp_path / "big.bin", progress=False, retries=2)
    assert len(server.requests) == 3


def test_attempts_that_make_progress_do_not_use_up_retries(served, tmp_path):
    server, payload = served
    server.drops["big.bin"] = [40_000] * 4  # five requests needed, with a single retry allowed
    dest = tmp_path / "big.bin"
    download_file(f"{server.url}/big.bin", dest, sha256=sha256(payload), progress=False, retries=1)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 5


def test_file_url_works_as_a_local_mirror(tmp_path):
    payload = os.urandom(5000)
    source = tmp_path / "local" / "big.bin"
    source.parent.mkdir()
    source.write_bytes(payload)
    dest = tmp_path / "big.bin"
    download_file(source.as_uri(), dest, sha256=sha256(payload), progress=False)
    assert dest.read_bytes() == payload


def test_http_404_fails_at_once(served, tmp_path):
    server, _ = served
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server.url}/missing.bin", tmp_path / "missing.bin", progress=False)
    assert len(server.requests) == 1


# ------------------------------------------------------------------------------------------------
# Safe extraction


def _tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link_info(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special_info(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


@pytest.mark.parametrize(
    "bad",
    [
        lambda outside: _file_info("../evil", b"x"),
        lambda outside: _file_info("a/../../evil", b"x"),
        lambda outside: _file_info(str(outside / "evil"), b"x"),  # absolute path
        lambda outside: _link_info("link", str(outside), tarfile.SYMTYPE),
        lambda outside: _link_info("hard", "good.txt", tarfile.LNKTYPE),
        lambda outside: _special_info("fifo", tarfile.FIFOTYPE),
        lambda outside: _special_info("dev", tarfile.CHRTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "fifo", "device"],
)
def test_malicious_tar_is_refused_before_writing(tmp_path, bad):
    outside = tmp_path / "outside"
    info, data = bad(outside)
    # A harmless member first: nothing at all may be written if a later member is bad.
    archive = _tar_with(tmp_path / "bad.tar", _file_info("good.txt", b"ok"), (info, data))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="Refusing to extract member"):
        safe_extract_tar(archive, dest, progress=False)
    assert not dest.exists()
    assert not outside.exists() and not (tmp_path / "evil").exists()


def _zip_with(path: Path, *members: tuple[zipfile.ZipInfo | str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


@pytest.mark.parametrize(
    "bad",
    [
        lambda outside: ("../evil", b"x"),
        lambda outside: (str(outside / "evil"), b"x"),
        lambda outside: ("..\\evil", b"x"),
        lambda outside: _zip_symlink("link", str(outside)),
    ],
    ids=["dotdot", "absolute", "backslash-dotdot", "symlink"],
)
def test_malicious_zip_is_refused_before_writing(tmp_path, bad):
    outside = tmp_path / "outside"
    archive = _zip_with(tmp_path / "bad.zip", ("good.txt", b"ok"), bad(outside))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="Refusing to extract member"):
        safe_extract_zip(archive, dest, progress=False)
    assert not dest.exists()
    assert not outside.exists() and not (tmp_path / "evil").exists()


def test_extraction_skips_files_already_extracted(tmp_path):
    archive = _zip_with(tmp_path / "a.zip", ("d/one.bin", b"1" * 100), ("d/two.bin", b"2" * 100))
    dest = tmp_path / "dest"
    (dest / "d").mkdir(parents=True)
    (dest / "d" / "one.bin").write_bytes(b"X" * 100)  # right size: counts as done
    (dest / "d" / "two.bin").write_bytes(b"2" * 10)  # truncated by an interrupted run
    assert sorted(safe_extract_zip(archive, dest, progress=True)) == ["d/one.bin", "d/two.bin"]
    assert (dest / "d" / "one.bin").read_bytes() == b"X" * 100
    assert (dest / "d" / "two.bin").read_bytes() == b"2" * 100


# ------------------------------------------------------------------------------------------------
# Datasets


def _mtat_fixture(root: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """Five MTAT-like files in `root`: a zip of fake mp3s split in three, and two csv files."""
    clips = {f"{folder}/artist-album-0{i}-title-0-29.mp3": os.urandom(3000) for i, folder in enumerate("05af")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for folder in "05af":  # the real zip lists folder entries too
            zf.writestr(f"{folder}/", b"")
        for name, data in clips.items():
            zf.writestr(name, data)
    blob = buffer.getvalue()
    cut = len(blob) // 3
    files = {
        "mp3.zip.001": blob[:cut],
        "mp3.zip.002": blob[cut : 2 * cut],
        "mp3.zip.003": blob[2 * cut :],
        "annotations_final.csv": b'clip_id\tguitar\tmp3_path\n2\t1\t"0/a.mp3"\n',
        "clip_info_final.csv": b"clip_id\ttrack_number\n2\t1\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {name: sha256(data) for name, data in files.items()}, clips


def test_download_mtat_layout_and_idempotence(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    checksums, clips = _mtat_fixture(www)
    dest = tmp_path / "mtat"
    with FileServer(www) as server:
        server.drops["mp3.zip.002"] = [1000]  # one flaky part on the way
        info = download_mtat(dest, server.url, checksums=checksums, progress=False)
        n_requests = len(server.requests)
        again = download_mtat(dest, server.url + "/", checksums=checksums, progress=False)
        assert len(server.requests) == n_requests  # the second call did not touch the network
    assert (dest / "annotations_final.csv").read_bytes() == (www / "annotations_final.csv").read_bytes()
    assert (dest / "clip_info_final.csv").is_file()
    for name, data in clips.items():
        assert (dest / "mp3" / name).read_bytes() == data
    assert sorted(p.name for p in (dest / "mp3").iterdir()) == ["0", "5", "a", "f"]
    assert not (dest / "mp3.zip").exists()
    assert all((dest / part).is_file() for part in dl.MTAT_ZIP_PARTS)
    marker = json.loads((dest / ".download.json").read_text())
    assert marker["dataset"] == "magnatagatune" and marker["n_files"] == len(clips)
    assert info["audio_dir"] == str(dest / "mp3") == again["audio_dir"]


def test_download_mtat_redoes_work_when_files_went_missing(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    checksums, clips = _mtat_fixture(www)
    dest = tmp_path / "mtat"
    with FileServer(www) as server:
        download_mtat(dest, server.url, checksums=checksums, progress=False)
        n_requests = len(server.requests)
        victim = dest / "mp3" / next(iter(clips))
        victim.unlink()
        download_mtat(dest, server.url, checksums=checksums, progress=False)
        assert len(server.requests) == n_requests  # re-extracted from the kept, verified parts
    assert victim.is_file()


def test_download_caltech256(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    images = {
        "256_ObjectCategories/001.ak47/001_0001.jpg": os.urandom(500),
        "256_ObjectCategories/257.clutter/257_0001.jpg": os.urandom(700),
    }
    dirs = [tarfile.TarInfo("256_ObjectCategories"), tarfile.TarInfo("256_ObjectCategories/001.ak47")]
    for d in dirs:
        d.type = tarfile.DIRTYPE
    archive = _tar_with(www / "256_ObjectCategories.tar", *[(d, None) for d in dirs],
                        *[_file_info(n, d) for n, d in images.items()])
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    dest = tmp_path / "caltech"
    with FileServer(www) as server:
        url = f"{server.url}/256_ObjectCategories.tar?download=1"
        info = download_caltech256(dest, url, md5=md5, progress=False)
        download_caltech256(dest, url, md5=md5, progress=False)
        assert len(server.requests) == 1
    for name, data in images.items():
        assert (dest / name).read_bytes() == data
    assert info["image_dir"] == str(dest / "256_ObjectCategories")
    assert json.loads((dest / ".download.json").read_text())["n_files"] == 2


def test_download_caltech256_wrong_md5(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    _tar_with(www / "256_ObjectCategories.tar", _file_info("256_ObjectCategories/001.ak47/a.jpg", b"x"))
    dest = tmp_path / "caltech"
    with FileServer(www) as server, pytest.raises(DownloadError, match="Checksum mismatch"):
        download_caltech256(dest, f"{server.url}/256_ObjectCategories.tar", md5="0" * 32, progress=False)
    assert not (dest / "256_ObjectCategories").exists() and not (dest / ".download.json").exists()
