"""fetch_voc and fetch_voc2007_subset against a real loopback HTTP server serving small VOC tars.

The tests substitute each archive's MD5 with that of its generated tar (ARCHIVES is looked up at
call time); the production table is checked against torchvision's.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import tarfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import vocproj.data.download
from vocproj.__main__ import main
from vocproj.data.download import (
    ARCHIVES,
    ATTEMPTS_PER_MIRROR,
    CHUNK_SIZE,
    STAGING_PREFIX,
    SUBSET_MARKER,
    VOC2007_MIRRORS,
    VOC2007_TEST,
    VOC2007_TRAINVAL,
    VOC2012_MIRRORS,
    VOC2012_TRAINVAL,
    extracted_marker,
    fetch_voc,
    fetch_voc2007_subset,
    mirror_urls,
    subset_ids,
)
from vocproj.data.voc import CLASSES
from vocproj.errors import DownloadError
from vocproj.locks import LOCK_FILE

PRODUCTION = dict(ARCHIVES)  # taken before any test substitutes its own MD5s
V12, V07, T07 = VOC2012_TRAINVAL, VOC2007_TRAINVAL, VOC2007_TEST
P12 = f"/m/{V12}"  # where the server's main mirror folder serves VOC2012

IMAGE_IDS = ("2008_000001", "2008_000002", "2008_000003", "2008_000004")
IMAGE_BYTES = 150_000  # four images make a tar of ~600 KB: several download chunks
TRAINVAL_07_IDS = ("000005", "000007", "000009", "000012")
TEST_07_IDS = ("000001", "000002", "000003", "000004", "000006", "000008")
DEVKIT_VALUES = (-1, 1, -1, 0)  # 1 present, -1 absent, 0 only difficult objects


def tree_members(
    devkit: str, lists: Mapping[str, str], ids: Sequence[str], seed: int, image_bytes: int
) -> dict[str, bytes]:
    """A tiny VOC tree: `lists` in ImageSets/Main, a JPEG-like file and an annotation per id."""
    rng = random.Random(seed)
    members = {f"{devkit}/ImageSets/Main/{name}": text.encode() for name, text in lists.items()}
    for image_id in ids:
        members[f"{devkit}/JPEGImages/{image_id}.jpg"] = b"\xff\xd8\xff\xe0" + rng.randbytes(
            image_bytes
        )
        members[f"{devkit}/Annotations/{image_id}.xml"] = (
            f"<annotation><filename>{image_id}.jpg</filename></annotation>".encode()
        )
    return members


def id_list(ids: Sequence[str]) -> str:
    return "".join(f"{image_id}\n" for image_id in ids)


def voc_members(seed: int = 0) -> dict[str, bytes]:
    """A tiny VOC2012 trainval: train and val lists, two images each."""
    lists = {"train.txt": id_list(IMAGE_IDS[:2]), "val.txt": id_list(IMAGE_IDS[2:])}
    return tree_members("VOCdevkit/VOC2012", lists, IMAGE_IDS, seed, IMAGE_BYTES)


def voc2007_trainval_members(seed: int = 0) -> dict[str, bytes]:
    ids = TRAINVAL_07_IDS
    lists = {
        "train.txt": id_list(ids[:2]),
        "val.txt": id_list(ids[2:]),
        "trainval.txt": id_list(ids),
    }
    return tree_members("VOCdevkit/VOC2007", lists, ids, seed, 40_000)


# The devkit's lines of each <class>_test.txt, CRLF-ended as in the real VOC2007 files.
TEST_CLASS_LINES: dict[str, dict[str, str]] = {
    name: {
        image_id: f"{image_id} {DEVKIT_VALUES[(c + i) % len(DEVKIT_VALUES)]:2d}\r\n"
        for i, image_id in enumerate(TEST_07_IDS)
    }
    for c, name in enumerate(CLASSES)
}


def voc2007_test_members(seed: int = 0) -> dict[str, bytes]:
    lists = {"test.txt": id_list(TEST_07_IDS)}
    lists |= {f"{name}_test.txt": "".join(TEST_CLASS_LINES[name].values()) for name in CLASSES}
    return tree_members("VOCdevkit/VOC2007", lists, TEST_07_IDS, seed, 40_000)


def build_tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar holding `members` (name → bytes) and symbolic `links` (name → target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


MEMBERS = {V12: voc_members(), V07: voc2007_trainval_members(), T07: voc2007_test_members()}
TARS = {name: build_tar(members) for name, members in MEMBERS.items()}
VOC_TAR = TARS[V12]


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Route:
    data: bytes
    honour_range: bool = True
    drops_left: int = 0  # how many of the next replies stop after `drop_after` bytes
    drop_after: int = 0


@dataclass
class Served:
    path: str
    range: str | None
    status: int
    body_bytes: int


@dataclass
class MirrorServer:
    """The state behind the loopback server: what it serves and a log of every request."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[Served] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def folder(self, name: str) -> str:
        """A mirror: the folder URL the archives' file names are appended to."""
        return self.url(f"/{name}/")

    def bytes_served(self, path: str) -> int:
        return sum(entry.body_bytes for entry in self.log if entry.path == path)


class MirrorHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        mirror: MirrorServer = self.server.mirror  # type: ignore[attr-defined]
        route = mirror.routes.get(self.path)
        range_header = self.headers.get("Range")
        if route is None:
            self.send_error(404)
            mirror.log.append(Served(self.path, range_header, 404, 0))
            return
        status, body = self._reply(route, range_header)
        if route.drops_left:
            route.drops_left -= 1
            body = body[: route.drop_after]
        self.wfile.write(body)
        mirror.log.append(Served(self.path, range_header, status, len(body)))

    def _reply(self, route: Route, range_header: str | None) -> tuple[int, bytes]:
        """Send the status and headers for `route`; return the status and the body to send."""
        size = len(route.data)
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        start = int(match.group(1)) if match and route.honour_range else None
        if start is not None and start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return 416, b""
        self.send_response(200 if start is None else 206)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        body = route.data[start or 0 :]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return 200 if start is None else 206, body

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mirror from the environment or the defaults, and each archive with its test MD5."""
    for archive in PRODUCTION.values():
        monkeypatch.delenv(archive.mirrors_env_var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name, data in TARS.items():
        monkeypatch.setitem(ARCHIVES, name, replace(PRODUCTION[name], md5=md5_of(data), mirrors=()))


@pytest.fixture
def server() -> Iterator[MirrorServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    routes = {f"/m/{name}": Route(data) for name, data in TARS.items()}
    mirror = MirrorServer(port=httpd.server_address[1], routes=routes)
    httpd.mirror = mirror  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield mirror
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port_folder() -> str:
    """A mirror folder on a loopback port nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def fetch(root: Path, mirrors: list[str], year: int = 2012, **kwargs: object) -> Path:
    options: dict = {"progress": False, "timeout": 5.0, **kwargs}
    return fetch_voc(root, year, mirrors=mirrors, **options)


def fetch_subset(root: Path, split_ids: Mapping[str, Sequence[str]], mirrors: list[str]) -> Path:
    return fetch_voc2007_subset(root, split_ids, mirrors=mirrors, progress=False, timeout=5.0)


def trust(monkeypatch: pytest.MonkeyPatch, archive_file: Path, name: str = V12) -> None:
    """Make `archive_file`'s MD5 the expected one of archive `name`."""
    md5 = md5_of(archive_file.read_bytes())
    monkeypatch.setitem(ARCHIVES, name, replace(ARCHIVES[name], md5=md5))


def assert_extracted(voc_dir: Path, *names: str) -> None:
    """The files of the archives `names` are all in place, each archive marked extracted."""
    root = voc_dir.parent.parent
    for name in names:
        for member, data in MEMBERS[name].items():
            assert (root / member).read_bytes() == data
        assert extracted_marker(voc_dir, ARCHIVES[name]).is_file()
    assert not list(root.glob(f"{STAGING_PREFIX}*"))


def test_dead_mirrors_are_skipped_for_a_good_one(
    tmp_path: Path, server: MirrorServer, closed_port_folder: str
) -> None:
    mirrors = [closed_port_folder, server.folder("missing"), server.folder("m")]

    voc_dir = fetch(tmp_path, mirrors)

    assert voc_dir == tmp_path / "VOCdevkit" / "VOC2012"
    assert_extracted(voc_dir, V12)
    assert (tmp_path / V12).read_bytes() == VOC_TAR
    assert not (tmp_path / f"{V12}.part").exists()
    assert [(entry.path, entry.status) for entry in server.log] == [
        (f"/missing/{V12}", 404),
        (P12, 200),
    ]


def test_dropped_connection_resumes_with_a_range_request(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes[P12].drops_left = 1
    server.routes[P12].drop_after = len(VOC_TAR) // 2

    assert_extracted(fetch(tmp_path, [server.folder("m")]), V12)

    first, second = server.log
    assert first.range is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second.range or "").group(1))
    assert len(VOC_TAR) // 2 - CHUNK_SIZE <= resumed_at <= len(VOC_TAR) // 2
    assert second.status == 206
    assert len(VOC_TAR) <= server.bytes_served(P12) <= len(VOC_TAR) + CHUNK_SIZE


def test_mirror_that_keeps_dropping_is_left_and_the_next_resumes_its_bytes(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes[P12].drops_left = ATTEMPTS_PER_MIRROR + 1
    server.routes[P12].drop_after = CHUNK_SIZE + 1000
    server.routes[f"/m2/{V12}"] = Route(VOC_TAR)

    assert_extracted(fetch(tmp_path, [server.folder("m"), server.folder("m2")]), V12)

    assert [entry.path for entry in server.log] == [P12] * ATTEMPTS_PER_MIRROR + [f"/m2/{V12}"]
    assert server.log[-1].status == 206


def test_server_ignoring_range_makes_the_download_start_over(
    tmp_path: Path, server: MirrorServer
) -> None:
    (tmp_path / f"{V12}.part").write_bytes(b"stale bytes from another file")
    server.routes[P12].honour_range = False

    assert_extracted(fetch(tmp_path, [server.folder("m")]), V12)

    [request] = server.log
    assert request.range == "bytes=29-"
    assert request.status == 200


def test_complete_partial_download_answered_by_416_is_used(
    tmp_path: Path, server: MirrorServer
) -> None:
    (tmp_path / f"{V12}.part").write_bytes(VOC_TAR)

    assert_extracted(fetch(tmp_path, [server.folder("m")]), V12)

    assert [(entry.status, entry.body_bytes) for entry in server.log] == [(416, 0)]


def test_checksum_mismatch_deletes_the_download_and_tries_the_next_mirror(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes[f"/other/{V12}"] = Route(build_tar(voc_members(seed=1)))

    assert_extracted(fetch(tmp_path, [server.folder("other"), server.folder("m")]), V12)

    assert [(entry.path, entry.range) for entry in server.log] == [
        (f"/other/{V12}", None),
        (P12, None),  # started from byte 0: the bad download was deleted
    ]


def test_checksum_mismatch_on_every_mirror_lists_them_all(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes[f"/a/{V12}"] = Route(build_tar(voc_members(seed=1)))
    server.routes[f"/b/{V12}"] = Route(build_tar(voc_members(seed=2)))

    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, [server.folder("a"), server.folder("b")])

    message = str(raised.value)
    for folder in (server.folder("a"), server.folder("b")):
        assert re.search(rf"{re.escape(folder + V12)}: MD5 mismatch", message)
    assert sorted(path.name for path in tmp_path.iterdir()) == [LOCK_FILE]


@pytest.mark.parametrize(("year", "other_year"), [(2012, 2007), (2007, 2012)])
def test_every_mirror_failing_explains_the_manual_fix_for_the_year_in_use(
    tmp_path: Path, server: MirrorServer, closed_port_folder: str, year: int, other_year: int
) -> None:
    name = V12 if year == 2012 else V07  # the first archive the year needs

    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, [closed_port_folder, server.folder("missing")], year=year)

    message = str(raised.value)
    assert f"{closed_port_folder}{name}: " in message
    assert "Connection" in message
    assert f"{server.folder('missing')}{name}: HTTP 404" in message
    assert f"Could not download {name} (VOC{year})" in message
    assert f"--root {tmp_path} --archive PATH/TO/{name}" in message
    assert str(tmp_path / name) in message
    assert f"$VOCPROJ_VOC{year}_MIRRORS: folder URLs, to which {name} is appended" in message
    assert f"VOC{other_year}" not in message


def test_mirrors_are_folders_from_the_argument_else_the_years_variable_else_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    test07, trainval12 = PRODUCTION[T07], PRODUCTION[V12]
    assert mirror_urls(test07) == tuple(folder + T07 for folder in VOC2007_MIRRORS)
    assert mirror_urls(trainval12) == tuple(folder + V12 for folder in VOC2012_MIRRORS)
    assert mirror_urls(test07)[0] == f"http://host.robots.ox.ac.uk/pascal/VOC/voc2007/{T07}"

    monkeypatch.setenv("VOCPROJ_VOC2007_MIRRORS", " http://a.invalid/voc,\n http://b.invalid/ ")
    assert mirror_urls(test07) == (f"http://a.invalid/voc/{T07}", f"http://b.invalid/{T07}")
    assert mirror_urls(trainval12) == tuple(folder + V12 for folder in VOC2012_MIRRORS)
    assert mirror_urls(test07, ["http://c.invalid/x/"]) == (f"http://c.invalid/x/{T07}",)
    assert mirror_urls(test07, []) == ()


def test_production_archives_are_torchvisions() -> None:
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    for key, name in (("2012", V12), ("2007", V07), ("2007-test", T07)):
        entry, archive = DATASET_YEAR_DICT[key], PRODUCTION[name]
        assert (archive.name, archive.md5) == (entry["filename"], entry["md5"])
        assert str(archive.devkit_dir) == entry["base_dir"]
        assert entry["url"] in mirror_urls(archive)


def test_archive_argument_is_used_without_network(tmp_path: Path, server: MirrorServer) -> None:
    archive = tmp_path / "elsewhere" / "my-copy.tar"
    archive.parent.mkdir()
    archive.write_bytes(VOC_TAR)

    assert_extracted(fetch(tmp_path / "data", [server.folder("m")], archives=[archive]), V12)

    assert server.log == []
    assert archive.read_bytes() == VOC_TAR


@pytest.mark.parametrize(
    ("file_name", "complaint"),
    [("my-copy.tar", "is none of the archives needed for VOC2012"), (V12, "expected ")],
    ids=["matched-by-md5", "matched-by-name"],
)
def test_archive_argument_with_wrong_checksum_is_kept(
    tmp_path: Path, server: MirrorServer, file_name: str, complaint: str
) -> None:
    archive = tmp_path / file_name
    archive.write_bytes(VOC_TAR[:-1024])

    with pytest.raises(DownloadError, match=re.escape(str(archive))) as raised:
        fetch(tmp_path / "data", [server.folder("m")], archives=[archive])

    assert complaint in str(raised.value)
    assert archive.read_bytes() == VOC_TAR[:-1024]
    assert server.log == []
    assert not (tmp_path / "data" / "VOCdevkit").exists()


def test_archive_already_at_root_is_verified_before_any_network_use(
    tmp_path: Path, server: MirrorServer
) -> None:
    (tmp_path / V12).write_bytes(b"not the archive")

    with pytest.raises(DownloadError, match="expected " + ARCHIVES[V12].md5):
        fetch(tmp_path, [server.folder("m")])

    assert (tmp_path / V12).read_bytes() == b"not the archive"
    assert server.log == []


def test_extracted_tree_is_detected_without_any_request(
    tmp_path: Path, server: MirrorServer
) -> None:
    fetch(tmp_path, [server.folder("m")])
    requests_so_far = len(server.log)

    assert fetch(tmp_path, [server.folder("m")]) == tmp_path / "VOCdevkit" / "VOC2012"

    assert len(server.log) == requests_so_far == 1


def test_tree_extracted_by_hand_is_left_alone(tmp_path: Path, server: MirrorServer) -> None:
    with tarfile.open(fileobj=io.BytesIO(VOC_TAR)) as tar:
        tar.extractall(tmp_path, filter="data")

    voc_dir = fetch(tmp_path, [server.folder("m")])

    assert server.log == []
    assert not extracted_marker(voc_dir, ARCHIVES[V12]).exists()


def test_interrupted_extraction_is_redone(tmp_path: Path, server: MirrorServer) -> None:
    (tmp_path / V12).write_bytes(VOC_TAR)
    leftover_staging = tmp_path / f"{STAGING_PREFIX}killed"
    (leftover_staging / "VOCdevkit").mkdir(parents=True)
    half_tree = tmp_path / "VOCdevkit" / "VOC2012"
    (half_tree / "ImageSets" / "Main").mkdir(parents=True)
    (half_tree / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n")
    (half_tree / "ImageSets" / "Main" / "val.txt").write_text("2008_000003\n")
    (half_tree / "JPEGImages").mkdir()
    (half_tree / "JPEGImages" / "2008_000001.jpg").write_bytes(b"\xff\xd8 truncated")

    assert_extracted(fetch(tmp_path, [server.folder("m")]), V12)

    assert not leftover_staging.exists()
    assert server.log == []


@pytest.mark.parametrize(
    ("bad_name", "links"),
    [
        ("VOCdevkit/../../escaped.txt", None),
        ("../escaped.txt", None),
        (None, {"VOCdevkit/VOC2012/escape-link": "../../../escaped.txt"}),
    ],
    ids=["dotdot-inside", "dotdot-top", "symlink"],
)
def test_member_climbing_out_of_the_target_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bad_name: str | None,
    links: dict[str, str] | None,
) -> None:
    members = voc_members()
    if bad_name:
        members[bad_name] = b"should never be written"
    archive = tmp_path / "evil.tar"
    archive.write_bytes(build_tar(members, links))
    trust(monkeypatch, archive)
    root = tmp_path / "a" / "b"

    with pytest.raises(DownloadError, match=r"Refusing to extract .*escape"):
        fetch(root, [], archives=[archive])

    assert sorted(path.name for path in tmp_path.rglob("*")) == [LOCK_FILE, "a", "b", "evil.tar"]


def test_absolute_member_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "absolute-escape.txt"
    members = {**voc_members(), str(target): b"should never be written"}
    archive = tmp_path / "evil.tar"
    archive.write_bytes(build_tar(members))
    trust(monkeypatch, archive)

    with pytest.raises(DownloadError, match="absolute path"):
        fetch(tmp_path / "data", [], archives=[archive])

    assert not target.exists()
    assert not (tmp_path / "data" / "VOCdevkit").exists()


def test_archive_without_the_voc_layout_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "other.tar"
    archive.write_bytes(build_tar({"images/1.jpg": b"\xff\xd8"}))
    trust(monkeypatch, archive)

    with pytest.raises(DownloadError, match="no VOCdevkit/VOC2012/ directory"):
        fetch(tmp_path / "data", [], archives=[archive])

    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == [LOCK_FILE]


@pytest.mark.parametrize("progress", [False, True])
def test_progress_bar_only_when_asked(
    tmp_path: Path, server: MirrorServer, capfd: pytest.CaptureFixture[str], progress: bool
) -> None:
    fetch(tmp_path, [server.folder("m")], progress=progress)

    out, err = capfd.readouterr()
    assert out == ""
    if progress:
        assert V12 in err
        assert "B/s" in err
    else:
        assert err == ""


def test_voc2007_merges_trainval_and_test_into_one_tree(
    tmp_path: Path, server: MirrorServer
) -> None:
    voc_dir = fetch(tmp_path, [server.folder("m")], year=2007)

    assert voc_dir == tmp_path / "VOCdevkit" / "VOC2007"
    assert_extracted(voc_dir, V07, T07)  # train/val/trainval lists and test lists side by side
    assert [(entry.path, entry.status) for entry in server.log] == [
        (f"/m/{V07}", 200),
        (f"/m/{T07}", 200),
    ]
    assert fetch(tmp_path, [server.folder("m")], year=2007) == voc_dir
    assert len(server.log) == 2


def test_voc2007_second_archive_resumes_after_a_drop(tmp_path: Path, server: MirrorServer) -> None:
    server.routes[f"/m/{T07}"].drops_left = 1
    server.routes[f"/m/{T07}"].drop_after = len(TARS[T07]) // 2

    assert_extracted(fetch(tmp_path, [server.folder("m")], year=2007), V07, T07)

    assert [(entry.path, entry.status) for entry in server.log] == [
        (f"/m/{V07}", 200),
        (f"/m/{T07}", 200),
        (f"/m/{T07}", 206),
    ]
    assert server.log[-1].range is not None


def test_corrupt_second_archive_is_deleted_and_the_first_extraction_kept(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes[f"/bad/{V07}"] = Route(TARS[V07])
    server.routes[f"/bad/{T07}"] = Route(build_tar(voc2007_test_members(seed=1)))
    voc_dir = tmp_path / "VOCdevkit" / "VOC2007"

    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, [server.folder("bad")], year=2007)

    assert f"{server.folder('bad')}{T07}: MD5 mismatch" in str(raised.value)
    assert_extracted(voc_dir, V07)
    assert not extracted_marker(voc_dir, ARCHIVES[T07]).exists()
    assert not (tmp_path / T07).exists()
    assert not (tmp_path / f"{T07}.part").exists()

    server.log.clear()
    fetch(tmp_path, [server.folder("bad"), server.folder("m")], year=2007)

    assert [(entry.path, entry.range) for entry in server.log] == [
        (f"/bad/{T07}", None),
        (f"/m/{T07}", None),  # from byte 0: the corrupt copy was deleted
    ]
    assert_extracted(voc_dir, V07, T07)


def test_voc2007_local_archives_are_matched_by_name_or_md5(
    tmp_path: Path, server: MirrorServer
) -> None:
    renamed = tmp_path / "downloads" / "test-copy.tar"
    named = tmp_path / "elsewhere" / V07
    for path, data in ((renamed, TARS[T07]), (named, TARS[V07])):
        path.parent.mkdir()
        path.write_bytes(data)

    voc_dir = fetch(tmp_path / "data", [server.folder("m")], year=2007, archives=[renamed, named])

    assert_extracted(voc_dir, V07, T07)
    assert server.log == []


def test_voc2007_archive_errors_name_voc2007(tmp_path: Path, server: MirrorServer) -> None:
    (tmp_path / V07).write_bytes(b"not the archive")
    stranger = tmp_path / "stranger.tar"
    stranger.write_bytes(b"some other file")

    with pytest.raises(DownloadError) as at_root:
        fetch(tmp_path, [server.folder("m")], year=2007)
    with pytest.raises(DownloadError) as given:
        fetch(tmp_path, [server.folder("m")], year=2007, archives=[stranger])

    assert f"not an intact copy of {V07} (VOC2007)" in str(at_root.value)
    assert "needed for VOC2007" in str(given.value)
    assert f"{V07} (MD5 " in str(given.value) and f"{T07} (MD5 " in str(given.value)
    for message in (str(at_root.value), str(given.value)):
        assert "VOC2012" not in message
    assert server.log == []


def subset_lists() -> dict[str, list[str]]:
    """A subset of the generated test images, not in sorted order, with trainval their union."""
    train, val = ["000004", "000001", "000003"], ["000008", "000002"]
    return {"train": train, "val": val, "trainval": sorted(train + val)}


def assert_subset_lists(voc_dir: Path, split_ids: Mapping[str, Sequence[str]]) -> None:
    """Each split's list and per-class lists hold the devkit's test lines of its ids, in order."""
    main = voc_dir / "ImageSets" / "Main"
    for split, ids in split_ids.items():
        assert (main / f"{split}.txt").read_text() == id_list(ids)
        for name in CLASSES:
            expected = "".join(TEST_CLASS_LINES[name][image_id] for image_id in ids)
            assert (main / f"{name}_{split}.txt").read_bytes() == expected.encode()


def test_subset_fetches_only_the_test_archive_and_copies_the_devkit_lines(
    tmp_path: Path, server: MirrorServer
) -> None:
    split_ids = subset_lists()

    voc_dir = fetch_subset(tmp_path, split_ids, [server.folder("m")])

    assert voc_dir == tmp_path / "VOCdevkit" / "VOC2007"
    assert [entry.path for entry in server.log] == [f"/m/{T07}"]
    assert_extracted(voc_dir, T07)  # the official test lists stay as they are
    assert_subset_lists(voc_dir, split_ids)
    train_lines = (voc_dir / "ImageSets" / "Main" / "bicycle_train.txt").read_bytes().split(b"\n")
    assert train_lines == [b"000004 -1\r", b"000001  1\r", b"000003  0\r", b""]  # verbatim
    written = (voc_dir / "ImageSets" / "Main" / "dog_val.txt").stat().st_mtime_ns

    assert fetch_subset(tmp_path, split_ids, [server.folder("m")]) == voc_dir

    assert len(server.log) == 1
    assert (voc_dir / "ImageSets" / "Main" / "dog_val.txt").stat().st_mtime_ns == written


def test_subset_id_missing_from_the_test_lists_is_named(
    tmp_path: Path, server: MirrorServer
) -> None:
    split_ids = {"train": ["000001", "000999"], "val": ["000002"]}

    with pytest.raises(DownloadError) as raised:
        fetch_subset(tmp_path, split_ids, [server.folder("m")])

    message = str(raised.value)
    assert "000999" in message and "train list" in message and "aeroplane_test.txt" in message
    voc_dir = tmp_path / "VOCdevkit" / "VOC2007"
    assert not (voc_dir / "ImageSets" / "Main" / "train.txt").exists()
    assert not (voc_dir / SUBSET_MARKER).exists()


def test_interrupted_subset_writes_its_lists_again(
    tmp_path: Path, server: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    split_ids = subset_lists()
    real_write = vocproj.data.download.atomic_write_text
    writes: list[Path] = []

    def dies_on_the_fifth_write(path: Path, text: str) -> None:
        if len(writes) == 4:
            raise KeyboardInterrupt
        writes.append(path)
        real_write(path, text)

    with monkeypatch.context() as patch:
        patch.setattr(vocproj.data.download, "atomic_write_text", dies_on_the_fifth_write)
        with pytest.raises(KeyboardInterrupt):
            fetch_subset(tmp_path, split_ids, [server.folder("m")])
    assert any(path.name == "train.txt" for path in writes)  # some lists were written

    voc_dir = fetch_subset(tmp_path, split_ids, [server.folder("m")])

    assert_subset_lists(voc_dir, split_ids)
    assert len(server.log) == 1  # the extracted test archive was kept


def test_subset_asked_with_other_lists_rewrites_them(tmp_path: Path, server: MirrorServer) -> None:
    fetch_subset(tmp_path, subset_lists(), [server.folder("m")])
    other = {"train": ["000003"], "val": ["000008", "000001"]}

    assert_subset_lists(fetch_subset(tmp_path, other, [server.folder("m")]), other)

    assert len(server.log) == 1


def test_subset_and_full_voc2007_never_share_a_tree(tmp_path: Path, server: MirrorServer) -> None:
    full = fetch(tmp_path / "full", [server.folder("m")], year=2007)
    subset = fetch_subset(tmp_path / "subset", subset_lists(), [server.folder("m")])

    with pytest.raises(DownloadError, match=r"train.txt exists and was not written by vocproj"):
        fetch_subset(tmp_path / "full", subset_lists(), [server.folder("m")])
    with pytest.raises(DownloadError, match=r"holds a vocproj subset of VOC2007"):
        fetch(tmp_path / "subset", [server.folder("m")], year=2007)

    assert_extracted(full, V07, T07)
    assert_subset_lists(subset, subset_lists())


def test_voc2007_real_ids_are_the_shared_lists(real_voc: Path) -> None:
    main_dir = real_voc / "ImageSets" / "Main"
    shipped = Path(vocproj.data.download.__file__).parent / "subsets" / "voc2007-real"

    ids = subset_ids("voc2007-real")

    assert ids == {
        split: (main_dir / f"{split}.txt").read_text().split()
        for split in ("train", "val", "trainval")
    }
    assert len(ids["train"]) == len(ids["val"]) == 1000
    for split in ("train", "val"):
        assert (shipped / f"{split}.txt").read_bytes() == (main_dir / f"{split}.txt").read_bytes()


def test_unknown_subset_or_year_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        DownloadError, match="no subset 'nope': vocproj/data/subsets/ holds voc2007-real"
    ):
        subset_ids("nope")
    with pytest.raises(DownloadError, match="cannot fetch VOC2010: choose 2012 or 2007"):
        fetch_voc(tmp_path, 2010)


def test_cli_download_names_the_dataset(
    tmp_path: Path, server: MirrorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = ["--mirror", server.folder("m")]

    assert main(["download", "--dataset", "voc2007", "--root", str(tmp_path / "a"), *mirror]) == 0
    assert (
        capsys.readouterr().out == f"voc2007 ready at {tmp_path / 'a' / 'VOCdevkit' / 'VOC2007'}\n"
    )

    real = ["download", "--dataset", "voc2007-real", "--root", str(tmp_path / "b"), *mirror]
    assert main(real) == 2  # the generated test archive lacks the real subset's photos
    assert "are not in" in capsys.readouterr().err
    assert [entry.path for entry in server.log[-1:]] == [f"/m/{T07}"]
