"""fetch_voc2012 against a real loopback HTTP server serving a small generated VOC-layout tar."""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vocproj.download import (
    ARCHIVE_NAME,
    ATTEMPTS_PER_MIRROR,
    CHUNK_SIZE,
    COMPLETE_MARKER,
    DEFAULT_MIRRORS,
    MIRRORS_ENV_VAR,
    STAGING_PREFIX,
    fetch_voc2012,
    resolve_mirrors,
)
from vocproj.errors import DownloadError

IMAGE_IDS = ("2008_000001", "2008_000002", "2008_000003", "2008_000004")
IMAGE_BYTES = 150_000  # four images make a tar of ~600 KB: several download chunks


def voc_members(seed: int = 0) -> dict[str, bytes]:
    """A tiny VOC2012 tree: JPEG-like files, annotations and the Main train/val split files."""
    rng = random.Random(seed)
    base = "VOCdevkit/VOC2012"
    members = {
        f"{base}/ImageSets/Main/train.txt": "\n".join(IMAGE_IDS[:2]).encode() + b"\n",
        f"{base}/ImageSets/Main/val.txt": "\n".join(IMAGE_IDS[2:]).encode() + b"\n",
    }
    for image_id in IMAGE_IDS:
        members[f"{base}/JPEGImages/{image_id}.jpg"] = b"\xff\xd8\xff\xe0" + rng.randbytes(
            IMAGE_BYTES
        )
        members[f"{base}/Annotations/{image_id}.xml"] = (
            f"<annotation><filename>{image_id}.jpg</filename></annotation>".encode()
        )
    return members


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


VOC_TAR = build_tar(voc_members())
VOC_MD5 = hashlib.md5(VOC_TAR).hexdigest()


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
    monkeypatch.delenv(MIRRORS_ENV_VAR, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[MirrorServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    mirror = MirrorServer(port=httpd.server_address[1], routes={"/voc.tar": Route(VOC_TAR)})
    httpd.mirror = mirror  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield mirror
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a loopback port nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/voc.tar"


def fetch(root: Path, mirrors: list[str], **kwargs: object) -> Path:
    options: dict = {"md5": VOC_MD5, "progress": False, "timeout": 5.0, **kwargs}
    return fetch_voc2012(root, mirrors=mirrors, **options)


def assert_extracted(voc_dir: Path) -> None:
    for name, data in voc_members().items():
        assert (voc_dir.parent.parent / name).read_bytes() == data
    assert (voc_dir / COMPLETE_MARKER).is_file()
    assert not list(voc_dir.parent.parent.glob(f"{STAGING_PREFIX}*"))


def test_dead_mirrors_are_skipped_for_a_good_one(
    tmp_path: Path, server: MirrorServer, closed_port_url: str
) -> None:
    mirrors = [closed_port_url, server.url("/missing.tar"), server.url("/voc.tar")]

    voc_dir = fetch(tmp_path, mirrors)

    assert voc_dir == tmp_path / "VOCdevkit" / "VOC2012"
    assert_extracted(voc_dir)
    assert (tmp_path / ARCHIVE_NAME).read_bytes() == VOC_TAR
    assert not (tmp_path / f"{ARCHIVE_NAME}.part").exists()
    assert [(entry.path, entry.status) for entry in server.log] == [
        ("/missing.tar", 404),
        ("/voc.tar", 200),
    ]


def test_dropped_connection_resumes_with_a_range_request(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes["/voc.tar"].drops_left = 1
    server.routes["/voc.tar"].drop_after = len(VOC_TAR) // 2

    assert_extracted(fetch(tmp_path, [server.url("/voc.tar")]))

    first, second = server.log
    assert first.range is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second.range or "").group(1))
    assert len(VOC_TAR) // 2 - CHUNK_SIZE <= resumed_at <= len(VOC_TAR) // 2
    assert second.status == 206
    assert len(VOC_TAR) <= server.bytes_served("/voc.tar") <= len(VOC_TAR) + CHUNK_SIZE


def test_mirror_that_keeps_dropping_is_left_and_the_next_resumes_its_bytes(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes["/voc.tar"].drops_left = ATTEMPTS_PER_MIRROR + 1
    server.routes["/voc.tar"].drop_after = CHUNK_SIZE + 1000
    server.routes["/voc2.tar"] = Route(VOC_TAR)

    assert_extracted(fetch(tmp_path, [server.url("/voc.tar"), server.url("/voc2.tar")]))

    assert [entry.path for entry in server.log] == ["/voc.tar"] * ATTEMPTS_PER_MIRROR + [
        "/voc2.tar"
    ]
    assert server.log[-1].status == 206


def test_server_ignoring_range_makes_the_download_start_over(
    tmp_path: Path, server: MirrorServer
) -> None:
    (tmp_path / f"{ARCHIVE_NAME}.part").write_bytes(b"stale bytes from another file")
    server.routes["/voc.tar"].honour_range = False

    assert_extracted(fetch(tmp_path, [server.url("/voc.tar")]))

    [request] = server.log
    assert request.range == "bytes=29-"
    assert request.status == 200


def test_complete_partial_download_answered_by_416_is_used(
    tmp_path: Path, server: MirrorServer
) -> None:
    (tmp_path / f"{ARCHIVE_NAME}.part").write_bytes(VOC_TAR)

    assert_extracted(fetch(tmp_path, [server.url("/voc.tar")]))

    assert [(entry.status, entry.body_bytes) for entry in server.log] == [(416, 0)]


def test_checksum_mismatch_deletes_the_download_and_tries_the_next_mirror(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes["/other.tar"] = Route(build_tar(voc_members(seed=1)))

    assert_extracted(fetch(tmp_path, [server.url("/other.tar"), server.url("/voc.tar")]))

    assert [(entry.path, entry.range) for entry in server.log] == [
        ("/other.tar", None),
        ("/voc.tar", None),  # started from byte 0: the bad download was deleted
    ]


def test_checksum_mismatch_on_every_mirror_lists_them_all(
    tmp_path: Path, server: MirrorServer
) -> None:
    server.routes["/a.tar"] = Route(build_tar(voc_members(seed=1)))
    server.routes["/b.tar"] = Route(build_tar(voc_members(seed=2)))
    mirrors = [server.url("/a.tar"), server.url("/b.tar")]

    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, mirrors)

    message = str(raised.value)
    for url in mirrors:
        assert re.search(rf"{re.escape(url)}: MD5 mismatch", message)
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_every_mirror_failing_explains_the_manual_fix(
    tmp_path: Path, server: MirrorServer, closed_port_url: str
) -> None:
    missing = server.url("/missing.tar")

    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, [closed_port_url, missing])

    message = str(raised.value)
    assert f"{closed_port_url}: " in message
    assert "Connection" in message
    assert f"{missing}: HTTP 404" in message
    assert f"python -m vocproj download --root {tmp_path} --archive" in message
    assert str(tmp_path / ARCHIVE_NAME) in message
    assert MIRRORS_ENV_VAR in message


def test_mirrors_come_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch, server: MirrorServer, closed_port_url: str
) -> None:
    assert resolve_mirrors() == DEFAULT_MIRRORS
    monkeypatch.setenv(MIRRORS_ENV_VAR, f" {closed_port_url},\n {server.url('/voc.tar')} ")
    assert resolve_mirrors() == (closed_port_url, server.url("/voc.tar"))
    assert resolve_mirrors(["http://example.invalid/x.tar"]) == ("http://example.invalid/x.tar",)


def test_archive_argument_is_used_without_network(tmp_path: Path, server: MirrorServer) -> None:
    archive = tmp_path / "elsewhere" / "my-copy.tar"
    archive.parent.mkdir()
    archive.write_bytes(VOC_TAR)

    assert_extracted(fetch(tmp_path / "data", [server.url("/voc.tar")], archive=archive))

    assert server.log == []
    assert archive.read_bytes() == VOC_TAR


def test_archive_argument_with_wrong_checksum_is_kept(tmp_path: Path, server: MirrorServer) -> None:
    archive = tmp_path / "my-copy.tar"
    archive.write_bytes(VOC_TAR[:-1024])

    with pytest.raises(DownloadError, match=re.escape(str(archive))):
        fetch(tmp_path / "data", [server.url("/voc.tar")], archive=archive)

    assert archive.read_bytes() == VOC_TAR[:-1024]
    assert server.log == []
    assert not (tmp_path / "data" / "VOCdevkit").exists()


def test_archive_already_at_root_is_verified_before_any_network_use(
    tmp_path: Path, server: MirrorServer
) -> None:
    (tmp_path / ARCHIVE_NAME).write_bytes(b"not the archive")

    with pytest.raises(DownloadError, match="expected " + VOC_MD5):
        fetch(tmp_path, [server.url("/voc.tar")])

    assert (tmp_path / ARCHIVE_NAME).read_bytes() == b"not the archive"
    assert server.log == []


def test_extracted_tree_is_detected_without_any_request(
    tmp_path: Path, server: MirrorServer
) -> None:
    fetch(tmp_path, [server.url("/voc.tar")])
    requests_so_far = len(server.log)

    assert fetch(tmp_path, [server.url("/voc.tar")]) == tmp_path / "VOCdevkit" / "VOC2012"

    assert len(server.log) == requests_so_far == 1


def test_tree_extracted_by_hand_is_left_alone(tmp_path: Path, server: MirrorServer) -> None:
    with tarfile.open(fileobj=io.BytesIO(VOC_TAR)) as tar:
        tar.extractall(tmp_path, filter="data")

    voc_dir = fetch(tmp_path, [server.url("/voc.tar")])

    assert server.log == []
    assert not (voc_dir / COMPLETE_MARKER).exists()


def test_interrupted_extraction_is_redone(tmp_path: Path, server: MirrorServer) -> None:
    (tmp_path / ARCHIVE_NAME).write_bytes(VOC_TAR)
    leftover_staging = tmp_path / f"{STAGING_PREFIX}killed"
    (leftover_staging / "VOCdevkit").mkdir(parents=True)
    half_tree = tmp_path / "VOCdevkit" / "VOC2012"
    (half_tree / "ImageSets" / "Main").mkdir(parents=True)
    (half_tree / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n")
    (half_tree / "ImageSets" / "Main" / "val.txt").write_text("2008_000003\n")
    (half_tree / "JPEGImages").mkdir()
    (half_tree / "JPEGImages" / "2008_000001.jpg").write_bytes(b"\xff\xd8 truncated")

    assert_extracted(fetch(tmp_path, [server.url("/voc.tar")]))

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
    tmp_path: Path, bad_name: str | None, links: dict[str, str] | None
) -> None:
    members = voc_members()
    if bad_name:
        members[bad_name] = b"should never be written"
    archive = tmp_path / "evil.tar"
    archive.write_bytes(build_tar(members, links))
    root = tmp_path / "a" / "b"

    with pytest.raises(DownloadError, match=r"Refusing to extract .*escape"):
        fetch(root, [], archive=archive, md5=hashlib.md5(archive.read_bytes()).hexdigest())

    assert sorted(path.name for path in tmp_path.rglob("*")) == ["a", "b", "evil.tar"]


def test_absolute_member_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "absolute-escape.txt"
    members = {**voc_members(), str(target): b"should never be written"}
    archive = tmp_path / "evil.tar"
    archive.write_bytes(build_tar(members))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()

    with pytest.raises(DownloadError, match="absolute path"):
        fetch(tmp_path / "data", [], archive=archive, md5=md5)

    assert not target.exists()
    assert not (tmp_path / "data" / "VOCdevkit").exists()


def test_archive_without_the_voc_layout_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "other.tar"
    archive.write_bytes(build_tar({"images/1.jpg": b"\xff\xd8"}))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()

    with pytest.raises(DownloadError, match="no VOCdevkit/VOC2012/ directory"):
        fetch(tmp_path / "data", [], archive=archive, md5=md5)

    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize("progress", [False, True])
def test_progress_bar_only_when_asked(
    tmp_path: Path, server: MirrorServer, capfd: pytest.CaptureFixture[str], progress: bool
) -> None:
    fetch(tmp_path, [server.url("/voc.tar")], progress=progress)

    out, err = capfd.readouterr()
    assert out == ""
    if progress:
        assert ARCHIVE_NAME in err
        assert "B/s" in err
    else:
        assert err == ""
