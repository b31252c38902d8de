"""Fetch PASCAL VOC 2012 trainval: mirrors, resumable download, MD5 check, safe extraction."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

import requests
from tqdm.auto import tqdm

from vocproj.errors import DownloadError
from vocproj.io import atomic_write_text
from vocproj.voc import jpeg_path

ARCHIVE_NAME = "VOCtrainval_11-May-2012.tar"
ARCHIVE_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
DEFAULT_MIRRORS: tuple[str, ...] = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "https://thor.robots.ox.ac.uk/datasets/pascal-voc/voc2012/VOCtrainval_11-May-2012.tar",
    "https://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",
)
MIRRORS_ENV_VAR = "VOCPROJ_VOC2012_MIRRORS"
VOC2012_SUBDIR = PurePosixPath("VOCdevkit/VOC2012")
COMPLETE_MARKER = ".vocproj-complete"
ATTEMPTS_PER_MIRROR = 5
CHUNK_SIZE = 64 * 1024
STAGING_PREFIX = ".vocproj-extract-"

_SAFE_EXTRACT_KWARGS = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)")


class _MirrorFailed(Exception):
    """This mirror cannot deliver the archive; the message says why."""


class _TransferInterrupted(Exception):
    """The body stopped short or the resume went wrong; another attempt may finish it."""


def fetch_voc2012(
    root: str | os.PathLike[str],
    *,
    mirrors: Sequence[str] | None = None,
    archive: str | os.PathLike[str] | None = None,
    md5: str = ARCHIVE_MD5,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Return `root/VOCdevkit/VOC2012`, downloading, verifying and extracting it when needed.

    A complete tree is left alone. Otherwise the archive comes from `archive`, else from
    `root/VOCtrainval_11-May-2012.tar` when present, else from the first mirror that delivers it
    (`mirrors`, else $VOCPROJ_VOC2012_MIRRORS, else DEFAULT_MIRRORS).
    """
    root = Path(root)
    voc_dir = root / VOC2012_SUBDIR
    if is_voc2012_complete(voc_dir):
        return voc_dir
    tar_path = Path(archive) if archive is not None else root / ARCHIVE_NAME
    if archive is not None or tar_path.exists():
        verify_archive(tar_path, md5, progress=progress)
    else:
        download_archive(
            resolve_mirrors(mirrors), tar_path, md5, progress=progress, timeout=timeout
        )
    return extract_voc2012(tar_path, root, progress=progress)


def resolve_mirrors(mirrors: Sequence[str] | None = None) -> tuple[str, ...]:
    """The URLs to try: `mirrors`, else those in $VOCPROJ_VOC2012_MIRRORS, else DEFAULT_MIRRORS."""
    if mirrors is not None:
        return tuple(mirrors)
    from_env = tuple(url for url in re.split(r"[\s,]+", os.environ.get(MIRRORS_ENV_VAR, "")) if url)
    return from_env or DEFAULT_MIRRORS


def is_voc2012_complete(voc_dir: Path) -> bool:
    """True for a tree vocproj finished extracting, or a full VOC2012 tree extracted by hand."""
    return (voc_dir / COMPLETE_MARKER).is_file() or _is_full_tree(voc_dir)


def _is_full_tree(voc_dir: Path) -> bool:
    """Every image listed in ImageSets/Main/{train,val}.txt has its JPEG and its annotation."""
    split_files = [voc_dir / "ImageSets" / "Main" / f"{split}.txt" for split in ("train", "val")]
    if not all(path.is_file() for path in split_files):
        return False
    ids = [
        line.split()[0]
        for path in split_files
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip()
    ]
    return bool(ids) and all(
        jpeg_path(voc_dir, image_id).is_file()
        and (voc_dir / "Annotations" / f"{image_id}.xml").is_file()
        for image_id in ids
    )


def file_md5(path: Path, *, progress: bool = False) -> str:
    """The hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with (
        open(path, "rb") as handle,
        _byte_bar(progress, f"MD5 {path.name}", total=path.stat().st_size) as bar,
    ):
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def verify_archive(path: Path, md5: str, *, progress: bool = True) -> None:
    """Raise DownloadError unless `path` exists with the expected MD5; never deletes it."""
    if not path.is_file():
        raise DownloadError(f"Archive {path} does not exist: check the path given with --archive.")
    actual = file_md5(path, progress=progress)
    if actual != md5:
        raise DownloadError(
            f"Archive {path} has MD5 {actual}, expected {md5}: it is not an intact copy of "
            f"{ARCHIVE_NAME}. Replace it with a good copy, or delete it and run "
            f"`python -m vocproj download` again to fetch it from a mirror."
        )


def download_archive(
    urls: Sequence[str], destination: Path, md5: str, *, progress: bool, timeout: float
) -> None:
    """Download to `destination` from the first mirror that delivers a copy with the right MD5.

    Bytes go to `destination` + ".part", which is resumed across attempts and mirrors, and is
    renamed to `destination` only once verified. Raises one DownloadError when every mirror fails.
    """
    part = destination.with_name(destination.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    with requests.Session() as session:
        session.headers["Accept-Encoding"] = "identity"
        for url in urls:
            failure = _try_mirror(session, url, part, md5, progress=progress, timeout=timeout)
            if failure is None:
                os.replace(part, destination)
                return
            failures.append(f"  - {url}: {failure}")
    raise DownloadError(_all_mirrors_failed_message(failures, destination, md5))


def _try_mirror(
    session: requests.Session, url: str, part: Path, md5: str, *, progress: bool, timeout: float
) -> str | None:
    """Download and verify from one mirror; None on success, else why it failed."""
    try:
        _download_resuming(session, url, part, progress=progress, timeout=timeout)
    except _MirrorFailed as exc:
        return str(exc)
    actual = file_md5(part, progress=progress)
    if actual != md5:
        part.unlink()
        return f"MD5 mismatch (got {actual}, expected {md5}); the download was deleted"
    return None


def _download_resuming(
    session: requests.Session, url: str, part: Path, *, progress: bool, timeout: float
) -> None:
    """Fetch `url` into `part`, resuming after interruptions, up to ATTEMPTS_PER_MIRROR tries."""
    for _ in range(ATTEMPTS_PER_MIRROR):
        try:
            _fetch_once(session, url, part, progress=progress, timeout=timeout)
            return
        except (requests.RequestException, _TransferInterrupted) as exc:
            last_error = exc
    raise _MirrorFailed(
        f"transfer interrupted {ATTEMPTS_PER_MIRROR} times, last: {_describe(last_error)}"
    )


def _fetch_once(
    session: requests.Session, url: str, part: Path, *, progress: bool, timeout: float
) -> None:
    """One GET, asking for the bytes after those already in `part` and appending them."""
    offset = part.stat().st_size if part.exists() else 0
    with _open_stream(session, url, offset, timeout) as response:
        content_range = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if response.status_code == 416:
            _accept_416(content_range, offset, part)
        elif response.status_code == 206:
            _check_resume_start(content_range, offset, part)
            _stream_to_file(response, part, offset, progress=progress)
        else:
            _stream_to_file(response, part, 0, progress=progress)


def _open_stream(
    session: requests.Session, url: str, offset: int, timeout: float
) -> requests.Response:
    """Send the GET (with a Range header when resuming); raise _MirrorFailed on a bad reply."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise _MirrorFailed(_describe(exc)) from exc
    if response.status_code in (200, 206) or (response.status_code == 416 and offset):
        return response
    response.close()
    raise _MirrorFailed(f"HTTP {response.status_code} {response.reason}")


def _accept_416(content_range: re.Match[str] | None, offset: int, part: Path) -> None:
    """A 416 means `part` already holds the whole file, unless the server reports another size."""
    total = content_range.group(2) if content_range else "*"
    if total not in ("*", str(offset)):
        part.unlink()
        raise _TransferInterrupted(
            f"partial download is larger than the file on the server ({total} bytes); restarting"
        )


def _check_resume_start(content_range: re.Match[str] | None, offset: int, part: Path) -> None:
    """Make sure a 206 reply starts where `part` ends; otherwise start over."""
    if content_range is None or content_range.group(1) != str(offset):
        part.unlink()
        raise _TransferInterrupted("server resumed at the wrong offset; restarting")


def _stream_to_file(response: requests.Response, part: Path, start: int, *, progress: bool) -> None:
    """Write the body to `part` from byte `start` on; raise _TransferInterrupted if cut short."""
    length = response.headers.get("Content-Length")
    expected = start + int(length) if length and length.isdigit() else None
    with (
        open(part, "ab" if start else "wb") as handle,
        _byte_bar(progress, ARCHIVE_NAME, total=expected, initial=start) as bar,
    ):
        for chunk in response.iter_content(CHUNK_SIZE):
            handle.write(chunk)
            bar.update(len(chunk))
    received = part.stat().st_size
    if expected is not None and received != expected:
        raise _TransferInterrupted(f"got {received} of {expected} bytes")


def _byte_bar(progress: bool, desc: str, *, total: int | None, initial: int = 0) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
    )


def _describe(error: BaseException) -> str:
    """The error's type and message, using urllib3's shorter reason when requests wraps one."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return f"{type(error).__name__}: {reason or error}"


def _all_mirrors_failed_message(failures: list[str], destination: Path, md5: str) -> str:
    tried = "\n".join(failures) or "  (no mirror URLs were given)"
    return (
        f"Could not download {ARCHIVE_NAME} from any mirror:\n{tried}\n"
        f"To fix it by hand, download {ARCHIVE_NAME} (MD5 {md5}) on a machine that can reach "
        f"one of these URLs, then either run\n"
        f"  python -m vocproj download --root {destination.parent} --archive PATH/TO/ARCHIVE\n"
        f"or put it at {destination} and run the download again. Other mirrors can be listed "
        f"in ${MIRRORS_ENV_VAR} (URLs separated by spaces or commas)."
    )


def extract_voc2012(archive: Path, root: Path, *, progress: bool = True) -> Path:
    """Safely extract `archive` into `root/VOCdevkit/VOC2012`, replacing an incomplete tree.

    Extraction goes to a staging directory under `root`; the finished VOC2012 directory is then
    moved into place and marked complete, so a half-extracted tree is never taken for a full one.
    """
    root.mkdir(parents=True, exist_ok=True)
    voc_dir = root / VOC2012_SUBDIR
    _remove_stale_staging(root)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    try:
        _extract_checked(archive, staging, progress=progress)
        _replace_dir(staging / VOC2012_SUBDIR, voc_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(voc_dir / COMPLETE_MARKER, f"extracted from {archive.name} by vocproj\n")
    return voc_dir


def _remove_stale_staging(root: Path) -> None:
    """Delete staging directories left by an interrupted extraction."""
    for leftover in root.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _replace_dir(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def _extract_checked(archive: Path, destination: Path, *, progress: bool) -> None:
    """Extract every member after checking that none escapes `destination` and the layout is VOC."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            _refuse_unsafe_members(members, archive)
            _require_voc_layout(members, archive)
            bar = tqdm(
                members, desc=f"Extracting {archive.name}", unit="file", disable=not progress
            )
            tar.extractall(destination, members=bar, **_SAFE_EXTRACT_KWARGS)
    except (tarfile.TarError, EOFError) as exc:
        raise DownloadError(
            f"Cannot extract {archive}: {exc}. Delete it and download it again."
        ) from exc


def _refuse_unsafe_members(members: list[tarfile.TarInfo], archive: Path) -> None:
    for member in members:
        problem = _unsafe_reason(member)
        if problem:
            raise DownloadError(
                f"Refusing to extract {archive}: member {member.name!r} {problem}. This is not "
                f"the genuine {ARCHIVE_NAME}; delete it and download it again."
            )


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the target directory, or None if it is safe."""
    if _escapes(member.name):
        return "has an absolute path or climbs out with '..'"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device or FIFO"
    if member.islnk() and _escapes(member.linkname):
        return f"is a hard link to {member.linkname!r} outside the archive"
    if member.issym() and _escapes(posixpath.join(posixpath.dirname(member.name), member.linkname)):
        return f"is a symbolic link to {member.linkname!r} outside the archive"
    return None


def _escapes(name: str) -> bool:
    """True for an absolute path, or a relative one that normalises to somewhere above its root."""
    if PureWindowsPath(name).anchor:  # "/x", "\\x" and "C:x" alike
        return True
    return posixpath.normpath(name.replace("\\", "/")).split("/")[0] == ".."


def _require_voc_layout(members: list[tarfile.TarInfo], archive: Path) -> None:
    if not any(PurePosixPath(m.name).parts[:2] == VOC2012_SUBDIR.parts for m in members):
        raise DownloadError(
            f"{archive} has no {VOC2012_SUBDIR}/ directory at its top level, so it is not "
            f"{ARCHIVE_NAME}. Pass the VOC2012 trainval archive instead."
        )
