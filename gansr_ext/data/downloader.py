"""Resumable, verified dataset downloads (`download(name, root)`), then extraction.

The archive is streamed to `<root>/<file>.part`; an interrupted download continues from the
size of the `.part` file (HTTP Range; for file:// URLs by seeking). When complete its sha256
is checked (when known: registry entries whose hash we have not verified say `sha256=None` and
are only warned about), then it is renamed to `<file>` and unpacked (zip or tar) into `root`,
refusing members that would land outside `root`. A `.<file>.extracted` marker makes repeated
calls no-ops.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Download", "DOWNLOADS", "DownloadError", "download", "sha256_file"]


@dataclass(frozen=True)
class Download:
    url: str
    sha256: str | None = None  # None: not verified (we do not invent hashes)
    approx_size: str = ""  # for humans only
    folder: str = ""  # what extraction creates under root


_DIV2K = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"


def _div2k(name: str, approx: str) -> Download:
    return Download(_DIV2K + name + ".zip", None, approx, name)


DOWNLOADS = {
    "DIV2K_train_HR": _div2k("DIV2K_train_HR", "3.5 GB"),
    "DIV2K_valid_HR": _div2k("DIV2K_valid_HR", "0.45 GB"),
    **{f"DIV2K_{split}_LR_bicubic_X{s}": Download(_DIV2K + f"DIV2K_{split}_LR_bicubic_X{s}.zip", None, "",
                                                   f"DIV2K_{split}_LR_bicubic/X{s}")
       for split in ("train", "valid") for s in (2, 3, 4)},
    "Flickr2K": Download("https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar", None, "20 GB", "Flickr2K"),
}


class DownloadError(RuntimeError):
    pass


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, timeout: float, chunk: int, progress: bool) -> None:
    """Append the rest of `url` to `part`, starting at its current size."""
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to fetch: the .part is complete
            return
        raise
    with resp:
        status = getattr(resp, "status", None)
        length = resp.headers.get("Content-Length")
        if url.startswith("file:"):  # no Range support: skip what we have; length is the whole file
            if offset:
                resp.seek(offset)
            total = int(length) if length else None
        else:
            if offset and status != 206:  # server ignored the Range header: start over
                offset = 0
                part.unlink()
            total = int(length) + offset if length else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5])
        with open(part, "ab") as f:
            while block := resp.read(chunk):
                f.write(block)
                if bar is not None:
                    bar.update(len(block))
        if bar is not None:
            bar.close()
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"{url}: got {part.stat().st_size} of {total} bytes")


def _safe_extract(archive: Path, root: Path) -> None:
    root_r = root.resolve()

    def inside(name: str) -> bool:
        target = (root / name).resolve()
        return target == root_r or root_r in target.parents

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            bad = [n for n in z.namelist() if not inside(n)]
            if bad:
                raise DownloadError(f"{archive}: refusing to extract members outside {root}: {bad[:3]}")
            z.extractall(root)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            bad = [m.name for m in t.getmembers() if not inside(m.name)]
            if bad:
                raise DownloadError(f"{archive}: refusing to extract members outside {root}: {bad[:3]}")
            t.extractall(root, filter="data")
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")


def download(name: str, root, *, url: str | None = None, sha256: str | None = None, extract: bool = True,
             retries: int = 3, timeout: float = 60.0, chunk: int = 1 << 20, progress: bool = True) -> Path:
    """Download (resuming), verify and unpack `name` into `root`; returns the extracted folder
    (or the archive with ``extract=False``).

    `name` is a key of `DOWNLOADS`; with `url` (and optionally `sha256`) any archive can be fetched,
    `name` then naming the folder it creates.
    """
    if url is None:
        if name not in DOWNLOADS:
            raise ValueError(f"unknown download {name!r}; known: {', '.join(DOWNLOADS)} (or pass url=...)")
        entry = DOWNLOADS[name]
        url, sha256, folder = entry.url, sha256 or entry.sha256, entry.folder
    else:
        folder = name
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    filename = url.rstrip("/").rsplit("/", 1)[-1]
    archive, part = root / filename, root / (filename + ".part")
    marker = root / f".{filename}.extracted"
    if extract and marker.exists():
        return root / folder
    if not archive.exists():
        for attempt in range(retries + 1):
            try:
                _fetch(url, part, timeout, chunk, progress)
                break
            except (urllib.error.URLError, OSError, DownloadError) as e:
                if isinstance(e, urllib.error.HTTPError) and e.code < 500:
                    raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
                if attempt == retries:
                    raise DownloadError(f"{url}: download failed after {retries + 1} attempts ({e}); "
                                        f"rerun to resume from {part}") from e
        if sha256 is None:
            warnings.warn(f"{filename}: no known sha256, integrity not verified", stacklevel=2)
        else:
            got = sha256_file(part)
            if got != sha256.lower():
                part.unlink()
                raise DownloadError(f"{filename}: sha256 mismatch (expected {sha256}, got {got}); "
                                    f"the partial file was deleted, rerun to download again")
        os.replace(part, archive)
    if not extract:
        return archive
    tmp = root / f".{filename}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _safe_extract(archive, tmp)
    for item in tmp.iterdir():  # move into place only once everything is unpacked
        dest = root / item.name
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(item, dest)
    tmp.rmdir()
    marker.touch()
    return root / folder
