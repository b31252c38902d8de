"""Fetch PASCAL VOC 2007 and 2012: mirrors, resumable download, MD5 check, safe extraction.

`fetch_voc(root, 2012)` gives VOC2012 trainval; `fetch_voc(root, 2007)` gives VOC2007 trainval
and test, merged into one tree. `fetch_voc2007_subset` fetches only the VOC2007 test archive and
gives it the split lists of a subset such as the 2,000-photo `voc2007-real` (`subset_ids`).

A mirror is a folder URL: the archive's file name is appended to it. The folders tried are the
`mirrors` given (the CLI's --mirror), else those in $VOCPROJ_VOC2012_MIRRORS or
$VOCPROJ_VOC2007_MIRRORS (spaces or commas between them), else the archive's own defaults.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath

import requests
from tqdm.auto import tqdm

from vocproj.data.voc import CLASSES, jpeg_path
from vocproj.errors import DownloadError
from vocproj.io import atomic_write_text
from vocproj.locks import owns_folder_argument


@dataclass(frozen=True)
class Archive:
    """One official VOC tar: its file name, its MD5, the mirrors serving it and what it holds."""

    name: str
    md5: str
    mirrors: tuple[str, ...]  # folder URLs that serve `name`, in the order they are tried
    devkit_dir: PurePosixPath  # the tree it extracts into, merging with what is there
    split_lists: tuple[str, ...]  # the ImageSets/Main/<split>.txt lists it brings

    @property
    def label(self) -> str:
        """The dataset as the devkit names it, e.g. "VOC2007"."""
        return self.devkit_dir.name

    @property
    def mirrors_env_var(self) -> str:
        """The environment variable listing other mirror folders for this year."""
        return f"VOCPROJ_{self.label}_MIRRORS"


VOC2012_MIRRORS: tuple[str, ...] = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
    "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/",  # torchvision's VOC URL
    "https://pjreddie.com/media/files/",
)
VOC2007_MIRRORS: tuple[str, ...] = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
    "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/",  # torchvision's VOC URL
    "https://pjreddie.com/media/files/",
)
VOC2012_TRAINVAL = "VOCtrainval_11-May-2012.tar"
VOC2007_TRAINVAL = "VOCtrainval_06-Nov-2007.tar"
VOC2007_TEST = "VOCtest_06-Nov-2007.tar"

# Every archive vocproj fetches, by file name. Looked up when used, so tests can substitute
# archives of their own. The MD5s are those of torchvision.datasets.voc.DATASET_YEAR_DICT.
ARCHIVES: dict[str, Archive] = {
    archive.name: archive
    for archive in (
        Archive(
            VOC2012_TRAINVAL,
            "6cd6e144f989b92b3379bac3b3de84fd",
            VOC2012_MIRRORS,
            PurePosixPath("VOCdevkit/VOC2012"),
            ("train", "val"),
        ),
        Archive(
            VOC2007_TRAINVAL,
            "c52e279531787c972589f7e41ab4ae64",
            VOC2007_MIRRORS,
            PurePosixPath("VOCdevkit/VOC2007"),
            ("train", "val"),
        ),
        Archive(
            VOC2007_TEST,
            "b6e924de25625d8de591ea690078ad9f",
            VOC2007_MIRRORS,
            PurePosixPath("VOCdevkit/VOC2007"),
            ("test",),
        ),
    )
}
# The archives each year needs, extracted in this order into one tree.
DATASET_ARCHIVES: dict[int, tuple[str, ...]] = {
    2012: (VOC2012_TRAINVAL,),
    2007: (VOC2007_TRAINVAL, VOC2007_TEST),
}
SUBSET_SPLITS: tuple[str, ...] = ("train", "val")  # the lists vocproj/data/subsets/<name>/ holds

COMPLETE_MARKER = ".vocproj-complete"
SUBSET_MARKER = ".vocproj-subset"
ATTEMPTS_PER_MIRROR = 5
CHUNK_SIZE = 64 * 1024
STAGING_PREFIX = ".vocproj-extract-"

_SAFE_EXTRACT_KWARGS = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)")
_SUBSET_IN_PROGRESS = "vocproj is writing this tree's subset split lists; they are incomplete\n"


class _MirrorFailed(Exception):
    """This mirror cannot deliver the archive; the message says why."""


class _TransferInterrupted(Exception):
    """The body stopped short or the resume went wrong; another attempt may finish it."""


@owns_folder_argument("the download")
def fetch_voc(
    root: str | os.PathLike[str],
    year: int,
    *,
    mirrors: Sequence[str] | None = None,
    archives: Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Return `root/VOCdevkit/VOC{year}`, downloading, verifying and extracting what it lacks.

    Each archive of DATASET_ARCHIVES[year] not yet extracted comes from `archives` (local files,
    matched by file name or MD5), else from `root/<file name>` when present, else from the first
    mirror that delivers it, and is merged into the tree before the next one is fetched.
    """
    needed = dataset_archives(year)
    voc_dir = Path(root) / needed[0].devkit_dir
    _refuse_subset_tree(voc_dir)
    _fetch_archives(Path(root), needed, mirrors, archives, progress=progress, timeout=timeout)
    return voc_dir


@owns_folder_argument("the download")
def fetch_voc2007_subset(
    root: str | os.PathLike[str],
    split_ids: Mapping[str, Sequence[str]],
    *,
    mirrors: Sequence[str] | None = None,
    archives: Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Return `root/VOCdevkit/VOC2007` holding the VOC2007 test images under `split_ids`' splits.

    Only the test archive is fetched. Each split gets `<split>.txt` and, per class,
    `<class>_<split>.txt` made of the devkit's own `<class>_test.txt` lines of its ids (1 present,
    -1 absent, 0 difficult only), in the order given. The tree is marked complete only once every
    list is written, so an interrupted run writes them again.
    """
    test = ARCHIVES[VOC2007_TEST]
    voc_dir = Path(root) / test.devkit_dir
    finished = _subset_marker_text(split_ids)
    if _read_marker(voc_dir / SUBSET_MARKER) == finished:
        return voc_dir
    _refuse_foreign_split_lists(voc_dir, split_ids)
    _fetch_archives(Path(root), (test,), mirrors, archives, progress=progress, timeout=timeout)
    main = voc_dir / "ImageSets" / "Main"
    test_lines = {name: _test_lines_by_id(main / f"{name}_test.txt", test) for name in CLASSES}
    _require_test_ids(split_ids, test_lines, main)
    atomic_write_text(voc_dir / SUBSET_MARKER, _SUBSET_IN_PROGRESS)
    _write_subset_lists(main, split_ids, test_lines)
    atomic_write_text(voc_dir / SUBSET_MARKER, finished)
    return voc_dir


def subset_ids(name: str) -> dict[str, list[str]]:
    """The ids of a subset in vocproj/data/subsets/<name>/: train, val and trainval (sorted)."""
    shipped_subsets = resources.files("vocproj.data") / "subsets"
    folder = shipped_subsets / name
    if not folder.is_dir():
        shipped = sorted(entry.name for entry in shipped_subsets.iterdir())
        raise DownloadError(
            f"vocproj ships no subset {name!r}: vocproj/data/subsets/ holds {', '.join(shipped)}."
        )
    splits = {
        split: _ids_in((folder / f"{split}.txt").read_text(encoding="utf-8"))
        for split in SUBSET_SPLITS
    }
    splits["trainval"] = sorted({image_id for ids in splits.values() for image_id in ids})
    return splits


def _ids_in(split_list: str) -> list[str]:
    """The first word of every non-blank line."""
    return [line.split()[0] for line in split_list.splitlines() if line.strip()]


def dataset_archives(year: int) -> tuple[Archive, ...]:
    """The archives VOC`year` needs, in extraction order."""
    if year not in DATASET_ARCHIVES:
        known = " or ".join(str(known) for known in DATASET_ARCHIVES)
        raise DownloadError(f"vocproj cannot fetch VOC{year}: choose {known}.")
    return tuple(ARCHIVES[name] for name in DATASET_ARCHIVES[year])


def mirror_urls(archive: Archive, mirrors: Sequence[str] | None = None) -> tuple[str, ...]:
    """`archive.name` in each mirror folder: `mirrors`, else its env var's, else its defaults."""
    folders = (_env_mirrors(archive) or archive.mirrors) if mirrors is None else tuple(mirrors)
    return tuple(f"{folder.rstrip('/')}/{archive.name}" for folder in folders)


def _env_mirrors(archive: Archive) -> tuple[str, ...]:
    listed = os.environ.get(archive.mirrors_env_var, "")
    return tuple(folder for folder in re.split(r"[\s,]+", listed) if folder)


def extracted_marker(voc_dir: Path, archive: Archive) -> Path:
    """The file that says vocproj finished extracting `archive` into `voc_dir`."""
    return voc_dir / f"{COMPLETE_MARKER}-{archive.name}"


def is_extracted(voc_dir: Path, archive: Archive) -> bool:
    """True once vocproj finished extracting `archive`, or when its lists' files are all there."""
    marked = extracted_marker(voc_dir, archive).is_file()
    return marked or _lists_complete(voc_dir, archive.split_lists)


def _lists_complete(voc_dir: Path, splits: Sequence[str]) -> bool:
    """Every image listed in ImageSets/Main/<split>.txt has its JPEG and its annotation."""
    split_files = [voc_dir / "ImageSets" / "Main" / f"{split}.txt" for split in splits]
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


def _fetch_archives(
    root: Path,
    needed: Sequence[Archive],
    mirrors: Sequence[str] | None,
    local: Sequence[str | os.PathLike[str]] | None,
    *,
    progress: bool,
    timeout: float,
) -> None:
    """Obtain and extract, one after the other, each of `needed` not yet extracted under `root`."""
    missing = [one for one in needed if not is_extracted(root / one.devkit_dir, one)]
    if not missing:
        return
    given = match_local_archives(local or (), needed, progress=progress)
    for archive in missing:
        tar_path = given.get(archive.name) or _obtain_archive(
            archive, root, mirrors, progress=progress, timeout=timeout
        )
        extract_archive(tar_path, archive, root, progress=progress)


def _obtain_archive(
    archive: Archive, root: Path, mirrors: Sequence[str] | None, *, progress: bool, timeout: float
) -> Path:
    """A verified `root/<file name>`: the copy already there, else one downloaded from a mirror."""
    tar_path = root / archive.name
    if tar_path.exists():
        verify_archive(tar_path, archive, progress=progress)
    else:
        urls = mirror_urls(archive, mirrors)
        download_archive(archive, urls, tar_path, progress=progress, timeout=timeout)
    return tar_path


def match_local_archives(
    paths: Sequence[str | os.PathLike[str]], needed: Sequence[Archive], *, progress: bool
) -> dict[str, Path]:
    """Which of `needed` each local file is (by file name, else by MD5), verified; never deletes."""
    by_name = {archive.name: archive for archive in needed}
    by_md5 = {archive.md5: archive for archive in needed}
    matched = {}
    for path in map(Path, paths):
        archive = by_name.get(path.name)
        if archive is not None:
            verify_archive(path, archive, progress=progress)
        else:
            _require_archive_file(path)
            actual = file_md5(path, progress=progress)
            archive = by_md5.get(actual)
            if archive is None:
                raise DownloadError(_unmatched_archive_message(path, actual, needed))
        matched[archive.name] = path
    return matched


def _unmatched_archive_message(path: Path, actual: str, needed: Sequence[Archive]) -> str:
    wanted = ", ".join(f"{archive.name} (MD5 {archive.md5})" for archive in needed)
    return (
        f"Archive {path} (MD5 {actual}) is none of the archives needed for {needed[0].label}: "
        f"{wanted}. Its name and its MD5 match none of them; pass an intact copy of one of "
        f"those with --archive, or leave this one out."
    )


def _require_archive_file(path: Path) -> None:
    if not path.is_file():
        raise DownloadError(f"Archive {path} does not exist: check the path given with --archive.")


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


def verify_archive(path: Path, archive: Archive, *, progress: bool = True) -> None:
    """Raise DownloadError unless `path` exists with `archive`'s MD5; never deletes it."""
    _require_archive_file(path)
    actual = file_md5(path, progress=progress)
    if actual != archive.md5:
        raise DownloadError(
            f"Archive {path} has MD5 {actual}, expected {archive.md5}: it is not an intact copy "
            f"of {archive.name} ({archive.label}). Replace it with a good copy, or delete it (and "
            f"leave out --archive) and run the download again to fetch it from a mirror."
        )


def download_archive(
    archive: Archive, urls: Sequence[str], destination: Path, *, progress: bool, timeout: float
) -> None:
    """Download to `destination` from the first URL that delivers a copy with the right MD5.

    Bytes go to `destination` + ".part", which is resumed across attempts and mirrors, and is
    renamed to `destination` only once verified. Raises one DownloadError when every mirror fails.
    """
    part = destination.with_name(destination.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    with requests.Session() as session:
        session.headers["Accept-Encoding"] = "identity"
        for url in urls:
            failure = _try_mirror(
                session, url, part, archive.md5, progress=progress, timeout=timeout
            )
            if failure is None:
                os.replace(part, destination)
                return
            failures.append(f"  - {url}: {failure}")
    raise DownloadError(_all_mirrors_failed_message(archive, failures, destination))


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
        _byte_bar(progress, part.stem, total=expected, initial=start) as bar,  # the archive name
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


def _all_mirrors_failed_message(archive: Archive, failures: list[str], destination: Path) -> str:
    tried = "\n".join(failures) or "  (no mirror URLs were given)"
    return (
        f"Could not download {archive.name} ({archive.label}) from any mirror:\n{tried}\n"
        f"To fix it by hand, download {archive.name} (MD5 {archive.md5}) on a machine that can "
        f"reach one of these URLs, then either put it at {destination} and run the download "
        f"again, or run `python -m vocproj download` again with `--root {destination.parent} "
        f"--archive PATH/TO/{archive.name}` added. Other mirrors can be given with --mirror or "
        f"in ${archive.mirrors_env_var}: folder URLs, to which {archive.name} is appended, "
        f"separated by spaces or commas."
    )


def extract_archive(tar_path: Path, archive: Archive, root: Path, *, progress: bool = True) -> Path:
    """Safely extract `tar_path`, a copy of `archive`, and merge it into `root/<devkit dir>`.

    Extraction goes to a staging directory under `root`; its files then move into the tree,
    replacing same-named files and keeping all others (another archive's), and only then is the
    archive marked extracted, so a half-extracted tree is never taken for a full one.
    """
    root.mkdir(parents=True, exist_ok=True)
    voc_dir = root / archive.devkit_dir
    _remove_stale_staging(root)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    try:
        _extract_checked(tar_path, archive, staging, progress=progress)
        _merge_tree(staging / archive.devkit_dir, voc_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    marker_text = f"extracted from {tar_path.name} by vocproj\n"
    atomic_write_text(extracted_marker(voc_dir, archive), marker_text)
    return voc_dir


def _remove_stale_staging(root: Path) -> None:
    """Delete staging directories left by an interrupted extraction."""
    for leftover in root.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _merge_tree(source: Path, target: Path) -> None:
    """Move `source` to `target`, merging entry by entry where both are directories."""
    if source.is_dir() and not source.is_symlink() and target.is_dir():
        for entry in source.iterdir():
            _merge_tree(entry, target / entry.name)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


def _extract_checked(
    tar_path: Path, archive: Archive, destination: Path, *, progress: bool
) -> None:
    """Extract every member after checking that none escapes `destination` and the layout is VOC."""
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            _refuse_unsafe_members(members, tar_path, archive)
            _require_voc_layout(members, tar_path, archive)
            bar = tqdm(
                members, desc=f"Extracting {tar_path.name}", unit="file", disable=not progress
            )
            tar.extractall(destination, members=bar, **_SAFE_EXTRACT_KWARGS)
    except (tarfile.TarError, EOFError) as exc:
        raise DownloadError(
            f"Cannot extract {tar_path}: {exc}. Delete it and download it again."
        ) from exc


def _refuse_unsafe_members(
    members: list[tarfile.TarInfo], tar_path: Path, archive: Archive
) -> None:
    for member in members:
        problem = _unsafe_reason(member)
        if problem:
            raise DownloadError(
                f"Refusing to extract {tar_path}: member {member.name!r} {problem}. This is not "
                f"the genuine {archive.name}; delete it and download it again."
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


def _require_voc_layout(members: list[tarfile.TarInfo], tar_path: Path, archive: Archive) -> None:
    if not any(PurePosixPath(m.name).parts[:2] == archive.devkit_dir.parts for m in members):
        raise DownloadError(
            f"{tar_path} has no {archive.devkit_dir}/ directory at its top level, so it is not "
            f"{archive.name}. Pass the {archive.label} archive {archive.name} instead."
        )


def _refuse_subset_tree(voc_dir: Path) -> None:
    """A subset's split lists are not the official ones: never take its tree for the full one."""
    if (voc_dir / SUBSET_MARKER).exists():
        raise DownloadError(
            f"{voc_dir} holds a vocproj subset of {voc_dir.name} (see {SUBSET_MARKER} there): its "
            f"split lists are not the official ones. Fetch the full {voc_dir.name} into another "
            f"--root."
        )


def _refuse_foreign_split_lists(voc_dir: Path, split_ids: Mapping[str, Sequence[str]]) -> None:
    """Never overwrite split lists that vocproj did not write for a subset (the official ones)."""
    if (voc_dir / SUBSET_MARKER).exists():
        return
    for split in split_ids:
        path = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
        if path.exists():
            raise DownloadError(
                f"{path} exists and was not written by vocproj for a subset (it may be the "
                f"official {voc_dir.name} {split} list), so a subset would overwrite it. "
                f"Fetch the subset into another --root."
            )


def _subset_marker_text(split_ids: Mapping[str, Sequence[str]]) -> str:
    """What SUBSET_MARKER holds once these lists are written: each split's size and digest."""
    lines = [f"VOC2007 test images under subset lists written by vocproj from {VOC2007_TEST}:"]
    for split, ids in split_ids.items():
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        lines.append(f"{split}: {len(ids)} ids, sha256 {digest}")
    return "\n".join(lines) + "\n"


def _read_marker(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _test_lines_by_id(path: Path, test: Archive) -> dict[str, str]:
    """The lines of a devkit `<class>_test.txt` by image id, verbatim with their line ends."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            lines = [line for line in handle.read().splitlines(keepends=True) if line.strip()]
    except OSError as exc:
        marker = extracted_marker(path.parents[2], test)
        raise DownloadError(
            f"Cannot read {path} ({exc.strerror}): the subset's per-class lists are copied from "
            f"it, so the {test.label} test tree there is incomplete. Delete {marker} if it "
            f"exists and run the download again to extract {test.name} again."
        ) from exc
    return {line.split()[0]: line if line.endswith("\n") else line + "\n" for line in lines}


def _require_test_ids(
    split_ids: Mapping[str, Sequence[str]], test_lines: Mapping[str, dict[str, str]], main: Path
) -> None:
    """Every subset id must have a line in every `<class>_test.txt`."""
    for name, lines in test_lines.items():
        for split, ids in split_ids.items():
            missing = [image_id for image_id in ids if image_id not in lines]
            if missing:
                raise DownloadError(
                    f"{len(missing)} id(s) of the subset's {split} list are not in "
                    f"{main / f'{name}_test.txt'}: {', '.join(missing[:5])}. A VOC2007 subset "
                    f"may only name images of {VOC2007_TEST}; fix the {split} list."
                )


def _write_subset_lists(
    main: Path, split_ids: Mapping[str, Sequence[str]], test_lines: Mapping[str, dict[str, str]]
) -> None:
    """Write `<split>.txt` and every `<class>_<split>.txt`, each atomically."""
    for split, ids in split_ids.items():
        atomic_write_text(main / f"{split}.txt", "".join(f"{image_id}\n" for image_id in ids))
        for name, lines in test_lines.items():
            text = "".join(lines[image_id] for image_id in ids)
            atomic_write_text(main / f"{name}_{split}.txt", text)
