import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gansr_ext.cli import main as gansr_main
from gansr_ext.data import PairedImageDataset, extract_subimages, imresize, prepare_dataset, read_image, write_image
from gansr_ext.data.downloader import DownloadError, download
from gansr_ext.data.io import read_image_native as _load
from gansr_ext.data.prepare import DATASETS, crop_positions, find_dataset_dirs

RNG = np.random.default_rng(0)


def test_crop_positions_follow_basicsr_rule():
    assert crop_positions(10, 4, 3) == [0, 3, 6]  # 6 + 4 = 10: nothing left over
    assert crop_positions(11, 4, 3) == [0, 3, 6, 7]  # 1 pixel left -> extra flush crop
    assert crop_positions(11, 4, 3, thresh=1) == [0, 3, 6]  # leftover 1 not > thresh
    assert crop_positions(3, 4, 2) == []


def test_extract_subimages_tiles_the_image(tmp_path):
    img = RNG.integers(0, 256, (10, 13, 3), dtype=np.uint8)
    write_image(tmp_path / "in" / "0001x4.png", img)
    (tmp_path / "in" / "tiny.png").parent.mkdir(exist_ok=True)
    write_image(tmp_path / "in" / "tiny.png", img[:3, :3])
    with pytest.warns(UserWarning, match="tiny.png"):
        out = extract_subimages(tmp_path / "in", tmp_path / "out", crop=6, step=4)
    # rows start at 0, 4 (+ flush at 4 -> already there); cols 0, 4 and flush 7
    assert [p.name for p in out] == [f"0001_s{k:03d}.png" for k in range(1, 7)]
    starts = [(y, x) for y in (0, 4) for x in (0, 4, 7)]
    for p, (y, x) in zip(out, starts):
        np.testing.assert_array_equal(_load(p), img[y: y + 6, x: x + 6])


def test_prepare_dataset_writes_hr_and_matlab_lr(tmp_path):
    img = RNG.integers(0, 256, (18, 23, 3), dtype=np.uint8)
    write_image(tmp_path / "src" / "a.png", img)
    dirs = prepare_dataset(tmp_path / "src", tmp_path / "out", scale=4)
    hr = _load(dirs["hr"] / "a.png")
    lr = _load(dirs["lr"] / "ax4.png")
    np.testing.assert_array_equal(hr, img[:16, :20])
    np.testing.assert_array_equal(lr, imresize(img[:16, :20], 0.25))  # uint8 path: rounded like MATLAB
    ds = PairedImageDataset(dirs["hr"], dirs["lr"], scale=4, crop=None, augment=False)
    assert ds[0]["lr"].shape == (3, 4, 5)


def test_prepare_dataset_subimages_are_aligned_and_16_bit_kept(tmp_path):
    img = RNG.integers(0, 65536, (40, 36, 3), dtype=np.uint16)
    write_image(tmp_path / "src" / "b.png", img, bit_depth=16)
    dirs = prepare_dataset(tmp_path / "src", tmp_path / "out", scale=2, crop=16, step=8)
    hr_tiles, lr_tiles = sorted(dirs["hr"].iterdir()), sorted(dirs["lr"].iterdir())
    # rows 0, 8, 16, 24; cols 0, 8, 16 and the flush 20
    assert [p.name for p in hr_tiles] == [p.name for p in lr_tiles] and len(hr_tiles) == 4 * 4
    lr_whole = imresize(img, 0.5)
    for p in (hr_tiles[0], hr_tiles[-1]):
        assert _load(p).dtype == np.uint16
    np.testing.assert_array_equal(_load(hr_tiles[-1]), img[24:40, 20:36])
    np.testing.assert_array_equal(_load(lr_tiles[-1]), lr_whole[12:20, 10:18])
    with pytest.raises(ValueError, match="multiples of scale"):
        prepare_dataset(tmp_path / "src", tmp_path / "o2", scale=4, crop=18)


def test_find_dataset_dirs(tmp_path):
    (tmp_path / "Set5" / "GTmod12").mkdir(parents=True)
    (tmp_path / "Set5" / "LRbicx4").mkdir()
    assert find_dataset_dirs(tmp_path, "Set5", 4) == (tmp_path / "Set5/GTmod12", tmp_path / "Set5/LRbicx4")
    assert find_dataset_dirs(tmp_path, "Set5", 2)[1] is None
    with pytest.raises(FileNotFoundError, match="Urban100"):
        find_dataset_dirs(tmp_path, "Urban100")
    with pytest.raises(ValueError, match="unknown dataset"):
        find_dataset_dirs(tmp_path, "nope")
    assert {"DIV2K", "Flickr2K", "OST", "Set5", "Set14", "BSD100", "Urban100"} <= set(DATASETS)


def _make_zip(folder: Path) -> tuple[Path, str]:
    src = folder / "archive.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("Toy/a.txt", "hello " * 1000)
        z.writestr("Toy/sub/b.bin", bytes(range(256)) * 64)
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_file_url_resume_verify_extract(tmp_path):
    src, sha = _make_zip(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    data = src.read_bytes()
    (root / "archive.zip.part").write_bytes(data[:1000])  # an interrupted earlier download
    out = download("Toy", root, url=src.as_uri(), sha256=sha, progress=False)
    assert out == root / "Toy"
    assert (out / "a.txt").read_text() == "hello " * 1000
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 64
    assert (root / "archive.zip").read_bytes() == data and not (root / "archive.zip.part").exists()
    (out / "a.txt").write_text("changed")
    download("Toy", root, url=src.as_uri(), sha256=sha, progress=False)  # marker: no re-extraction
    assert (out / "a.txt").read_text() == "changed"


def test_download_sha_mismatch_and_unknown_hash(tmp_path):
    src, sha = _make_zip(tmp_path)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download("Toy", tmp_path / "r1", url=src.as_uri(), sha256="0" * 64, progress=False)
    assert not (tmp_path / "r1" / "archive.zip.part").exists()
    assert not (tmp_path / "r1" / "Toy").exists()
    # a corrupt partial download is caught by the hash too
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "archive.zip.part").write_bytes(b"x" * 100)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download("Toy", tmp_path / "r2", url=src.as_uri(), sha256=sha, progress=False)
    with pytest.warns(UserWarning, match="no known sha256"):
        assert (download("Toy", tmp_path / "r3", url=src.as_uri(), progress=False) / "a.txt").exists()
    with pytest.raises(ValueError, match="unknown download"):
        download("NotADataset", tmp_path)


def test_download_refuses_path_traversal(tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escaped.txt", "x")
    with pytest.warns(UserWarning), pytest.raises(DownloadError, match="outside"):
        download("Evil", tmp_path / "root", url=bad.as_uri(), progress=False)
    assert not (tmp_path / "escaped.txt").exists()


def test_download_refuses_tar_links_leading_outside(tmp_path):
    # pooch's Untar applies tarfile's "data" filter only on Python >= 3.12: the check is ours
    for i, (kind, target) in enumerate([(tarfile.SYMTYPE, "../../outside"), (tarfile.LNKTYPE, "../outside"),
                                        (tarfile.SYMTYPE, "/etc/passwd")]):
        bad = tmp_path / f"evil{i}.tar"
        with tarfile.open(bad, "w") as t:
            t.addfile(tarfile.TarInfo("Toy/ok.txt"), io.BytesIO(b""))
            link = tarfile.TarInfo("Toy/link")
            link.type, link.linkname = kind, target
            t.addfile(link)
        with pytest.warns(UserWarning), pytest.raises(DownloadError, match="outside"):
            download("Toy", tmp_path / f"root{i}", url=bad.as_uri(), progress=False)
        assert not (tmp_path / f"root{i}" / "Toy").exists()
    good = tmp_path / "good.tar"
    with tarfile.open(good, "w") as t:
        info = tarfile.TarInfo("Toy/a.txt")
        info.size = 5
        t.addfile(info, io.BytesIO(b"hello"))
        link = tarfile.TarInfo("Toy/link")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        t.addfile(link)
    with pytest.warns(UserWarning):
        out = download("Toy", tmp_path / "ok", url=good.as_uri(), progress=False)
    assert (out / "link").read_text() == "hello"


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves one file, honouring `Range: bytes=N-` like a real HTTP server."""

    payload = b""
    ranges_seen: list = []
    honour_range = True
    cut_first_at = None  # the first answer stops after this many bytes (a dropped connection)
    status = None  # answer every request with this error status

    def do_GET(self):
        rng = self.headers.get("Range")
        self.ranges_seen.append(rng)
        if self.status:
            self.send_error(self.status)
            return
        rng = rng if self.honour_range else None
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_first_at is not None and len(self.ranges_seen) == 1:
            body = body[:self.cut_first_at]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def range_server(tmp_path):
    """(url of archive.zip on a local server, its sha256); _RangeHandler's switches reset."""
    src, sha = _make_zip(tmp_path)
    _RangeHandler.payload = src.read_bytes()
    _RangeHandler.ranges_seen = []
    _RangeHandler.honour_range, _RangeHandler.cut_first_at, _RangeHandler.status = True, None, None
    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/archive.zip", sha
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("honour_range", [True, False])
def test_download_http_resumes_with_range(tmp_path, range_server, honour_range):
    # a server that ignores Range answers 200 with the whole file: the .part must restart, not grow
    url, sha = range_server
    _RangeHandler.honour_range = honour_range
    root = tmp_path / "root"
    root.mkdir()
    (root / "archive.zip.part").write_bytes(_RangeHandler.payload[:777])
    out = download("Toy", root, url=url, sha256=sha, progress=False)
    assert (out / "a.txt").exists()
    assert _RangeHandler.ranges_seen == ["bytes=777-"]


def test_download_http_dropped_connection_is_resumed_and_4xx_is_not_retried(tmp_path, range_server):
    url, sha = range_server
    _RangeHandler.cut_first_at = 1000
    out = download("Toy", tmp_path / "root", url=url, sha256=sha, progress=False, chunk=256)
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 64
    # the second request resumes from what the first wrote (whole 256-byte chunks)
    assert len(_RangeHandler.ranges_seen) == 2 and _RangeHandler.ranges_seen[0] is None
    assert _RangeHandler.ranges_seen[1] in {f"bytes={n}-" for n in range(256, 1001)}, _RangeHandler.ranges_seen
    _RangeHandler.ranges_seen, _RangeHandler.status = [], 404
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("Toy", tmp_path / "r404", url=url, sha256=sha, progress=False)
    assert _RangeHandler.ranges_seen == [None]


def test_cli_prepare_list_and_errors(tmp_path, capsys):
    write_image(tmp_path / "src" / "a.png", RNG.random((16, 16, 3)))
    assert gansr_main(["data", "prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--scale", "4"]) == 0
    assert read_image(tmp_path / "out" / "LR_bicubic" / "X4" / "ax4.png").shape == (4, 4, 3)
    assert gansr_main(["data", "subimages", str(tmp_path / "out" / "HR"), str(tmp_path / "sub"),
                       "--crop", "8", "--step", "8"]) == 0
    assert len(list((tmp_path / "sub").iterdir())) == 4
    assert gansr_main(["data", "list"]) == 0
    assert "DIV2K_train_HR" in capsys.readouterr().out
    assert gansr_main(["data", "download", "NotADataset", "--root", str(tmp_path)]) == 2
    assert "unknown download" in capsys.readouterr().err
    src, sha = _make_zip(tmp_path)
    assert gansr_main(["data", "download", "Toy", "--root", str(tmp_path / "dl"), "--url", src.as_uri(),
                       "--sha256", sha]) == 0
    assert (tmp_path / "dl" / "Toy" / "a.txt").exists()
