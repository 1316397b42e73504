"""Resumable, verified dataset downloads (`download(name, root)`), then extraction, with `pooch`.

`pooch.retrieve` streams the archive (`pooch.HTTPDownloader`, requests), checks its sha256 and only
then moves it to `<root>/<file>`; `pooch.Unzip` / `pooch.Untar` unpack it. Two things pooch does not
do are here: resuming (the bytes go to `<root>/<file>.part`, and an interrupted download continues
from its size: HTTP Range, or seeking for file:// URLs, which pooch does not take) and refusing
archive members, or link targets, that would land outside `root` (pooch's Untar applies tarfile's
"data" filter only on Python >= 3.12). Registry entries whose hash we have not verified say
`sha256=None` and are only warned about. Unpacking goes to a hidden folder first and is moved into
place when complete; a `.<file>.extracted` marker makes repeated calls no-ops.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import urllib.parse
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Download", "DOWNLOADS", "DownloadError", "download"]


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


def download(name: str, root, *, url: str | None = None, sha256: str | None = None, extract: bool = True,
             retries: int = 3, timeout: float = 60.0, chunk: int = 1 << 20, progress: bool = True) -> Path:
    """Download (resuming), verify and unpack `name` into `root`; returns the extracted folder
    (or the archive with ``extract=False``).

    `name` is a key of `DOWNLOADS`; with `url` (and optionally `sha256`) any archive can be fetched,
    `name` then naming the folder it creates. `retries`: further attempts after a network error,
    each resuming where the last stopped.
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
    archive = root / url.rstrip("/").rsplit("/", 1)[-1]
    marker = root / f".{archive.name}.extracted"
    if extract and marker.exists():
        return root / folder
    fetch = _ResumingDownloader(archive.with_name(archive.name + ".part"), retries, timeout, chunk, progress)
    _retrieve(url, sha256, archive, fetch, progress)
    if not extract:
        return archive
    _extract(archive, root)
    marker.touch()
    return root / folder


def _retrieve(url: str, sha256: str | None, archive: Path, fetch, progress: bool) -> None:
    """`archive` from `url` unless it is there (and matches `sha256`, when known)."""
    import pooch  # imported when used, as requests: `gansr_ext.data` loads without them

    if sha256 is None and not archive.exists():
        warnings.warn(f"{archive.name}: no known sha256, integrity not verified", stacklevel=3)
    try:
        pooch.retrieve(url, known_hash=None if sha256 is None else f"sha256:{sha256}", fname=archive.name,
                       path=archive.parent, downloader=fetch, progressbar=progress)
    except ValueError as e:  # pooch's hash check; it deleted the download
        raise DownloadError(f"{archive.name}: sha256 mismatch ({e}); rerun to download again") from e


class _ResumingDownloader:
    """A pooch downloader that completes `part` (retrying network errors, each attempt resuming),
    then hands it to pooch as the downloaded file (pooch checks the hash and moves it into place)."""

    def __init__(self, part: Path, retries: int, timeout: float, chunk: int, progress: bool):
        self.part, self.retries, self.timeout, self.chunk, self.progress = part, retries, timeout, chunk, progress

    def __call__(self, url: str, output_file: str, pooch_instance, check_only: bool = False) -> None:
        for attempt in range(self.retries + 1):
            try:
                if url.startswith("file:"):
                    self._copy_rest(url)
                else:
                    self._fetch_rest(url)
                break
            except OSError as e:  # requests' errors are OSErrors too
                status = getattr(getattr(e, "response", None), "status_code", None)
                if status is not None and status < 500:
                    raise DownloadError(f"{url}: HTTP {status} {e.response.reason}") from e
                if attempt == self.retries:
                    raise DownloadError(f"{url}: download failed after {self.retries + 1} attempts ({e}); "
                                        f"rerun to resume from {self.part}") from e
        os.replace(self.part, output_file)

    def _fetch_rest(self, url: str) -> None:
        """Append the rest of `url` to the .part (HTTP Range from its size)."""
        import pooch
        import requests

        offset = self.part.stat().st_size if self.part.exists() else 0
        with open(self.part, "ab") as f:
            def restart_if_whole_file(response, *args, **kwargs):
                if offset and response.status_code == 200:  # the server ignored Range: it sends everything
                    f.truncate(0)

            http = pooch.HTTPDownloader(progressbar=self.progress, chunk_size=self.chunk, timeout=self.timeout,
                                        headers={**pooch.downloaders.REQUESTS_HEADERS,
                                                 **({"Range": f"bytes={offset}-"} if offset else {})},
                                        hooks={"response": restart_if_whole_file})
            try:
                http(url, f, None)
            except requests.HTTPError as e:
                if not (offset and e.response.status_code == 416):  # 416 with an offset: the .part is complete
                    raise

    def _copy_rest(self, url: str) -> None:
        """Append the rest of a file:// URL to the .part (seeking to its size)."""
        source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        offset = self.part.stat().st_size if self.part.exists() else 0
        with open(source, "rb") as src, open(self.part, "ab") as f:
            src.seek(offset)
            shutil.copyfileobj(src, f, self.chunk)
        if self.part.stat().st_size != source.stat().st_size:
            raise DownloadError(f"{url}: the partial file {self.part} is larger than the source; delete it")


def _extract(archive: Path, root: Path) -> None:
    """Unpack into `<root>/.<archive>.extracting`, then move its items into `root`."""
    staging = root / f".{archive.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    unpack = _checked_unpacker(archive, staging)
    unpack(str(archive), "download", None)  # pooch processor; "download": unpack even if the folder exists
    for item in staging.iterdir():  # move into place only once everything is unpacked
        dest = root / item.name
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(item, dest)
    staging.rmdir()


def _checked_unpacker(archive: Path, dest: Path):
    """pooch.Unzip / pooch.Untar into `dest`, after refusing an archive with a member (or a link
    target, or a device / FIFO member) that would land outside `dest`."""
    import pooch

    dest_r = dest.resolve()

    def outside(name: str) -> bool:
        target = (dest / name).resolve()
        return target != dest_r and dest_r not in target.parents

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            bad = [n for n in z.namelist() if outside(n)]
        unpacker = pooch.Unzip(extract_dir=dest.name)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            bad = [m.name for m in t.getmembers()
                   if outside(m.name) or not (m.isfile() or m.isdir() or m.issym() or m.islnk())
                   or m.issym() and outside(posixpath.join(posixpath.dirname(m.name), m.linkname))
                   or m.islnk() and outside(m.linkname)]
        unpacker = pooch.Untar(extract_dir=dest.name)
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")
    if bad:
        raise DownloadError(f"{archive}: refusing to extract members outside {dest.parent}: {bad[:3]}")
    return unpacker
