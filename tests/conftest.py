"""Shared fixtures: the real PhysioNet mirror in ../shared/data/physionet, served over HTTP on 127.0.0.1."""
from __future__ import annotations

import http.server
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
PHYSIONET = Path(os.environ.get("ECGTRANSFER_TEST_PHYSIONET", REPO.parent / "shared" / "data" / "physionet"))


_FAILED_MODULES: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember the modules that had a failing test (their folders are kept for inspection)."""
    report = yield
    if report.failed:
        _FAILED_MODULES.add(item.module.__name__)
    return report


@pytest.fixture(scope="module", autouse=True)
def _module_disk_hygiene(request, tmp_path_factory) -> Iterator[None]:
    """Removes the folders a test module made under pytest's base temp folder once the module is done.

    The suite trains many small ResNet50s whose checkpoints weigh ~190 MB each; module-scoped fixtures
    (stores, runs) would otherwise stay on disk until the end of the session, and CI once ran out of disk
    space on a shared machine. Folders of a module with a failing test are kept, as pytest's own
    ``tmp_path_retention_policy = "failed"`` (pyproject.toml) keeps those of failing tests.
    """
    base = tmp_path_factory.getbasetemp()
    before = {p.name for p in base.iterdir()}
    yield
    if request.module.__name__ in _FAILED_MODULES:
        return
    for p in base.iterdir():
        if p.name not in before and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


@pytest.fixture(scope="session")
def physionet_root() -> Path:
    """The partial PhysioNet mirror (read-only); tests skip when it is absent."""
    if not (PHYSIONET / "mitdb").is_dir():
        pytest.skip(f"shared PhysioNet mirror not found at {PHYSIONET}")
    return PHYSIONET


class MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory like physionet.org/files/, with byte ranges, and optional injected faults.

    ``server.faults`` maps a URL path (``/mitdb/1.0.0/100.dat``) to a callable ``(handler) -> bool``;
    when it returns True the handler has already answered (an error, a truncated body, ...).
    ``server.log`` records ``(method, path, range header)`` of every request.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as production servers do; avoids ~40 ms delayed-ACK stalls per small file

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.log.append(("GET", self.path, self.headers.get("Range")))  # type: ignore[attr-defined]
        fault = self.server.faults.get(self.path)  # type: ignore[attr-defined]
        if fault is not None and fault(self):
            return
        rng = self.headers.get("Range")
        local = Path(self.translate_path(self.path))
        if rng and local.is_file() and rng.startswith("bytes="):
            data = local.read_bytes()
            start_s, _, end_s = rng[len("bytes="):].partition("-")
            start = int(start_s)
            end = int(end_s) if end_s else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


class MirrorServer:
    """A running local HTTP mirror: ``url`` ends with '/', ``faults`` and ``log`` as in :class:`MirrorHandler`."""

    def __init__(self, root: Path) -> None:
        handler = lambda *a, **k: MirrorHandler(*a, directory=str(root), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.faults = {}  # type: ignore[attr-defined]
        self.httpd.log = []  # type: ignore[attr-defined]
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.root = root
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    @property
    def faults(self) -> dict[str, Callable[[MirrorHandler], bool]]:
        return self.httpd.faults  # type: ignore[attr-defined]

    @property
    def log(self) -> list[tuple[str, str, str | None]]:
        return self.httpd.log  # type: ignore[attr-defined]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve_dir() -> Iterator[Callable[[Path], MirrorServer]]:
    """Factory: serve any directory (for example a tampered copy of part of the mirror) on 127.0.0.1."""
    servers: list[MirrorServer] = []

    def start(root: Path) -> MirrorServer:
        server = MirrorServer(Path(root))
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def http_mirror(physionet_root: Path, serve_dir) -> MirrorServer:
    """The shared PhysioNet mirror served over real HTTP on 127.0.0.1 (fresh faults and log per test)."""
    return serve_dir(physionet_root)
