"""``fld dashboard``: write a round's data-quality page; ``fld serve``: serve the dashboards.

``fld serve`` binds 127.0.0.1 only (the pages show the data; put a reverse proxy with access
control in front to share them). It serves ``ROOT/reports/``: ``/`` is an index of the rounds'
dashboards, newest first; ``/latest`` is the newest round's dashboard; ``/round=R/dashboard.html``
any round's. Only regular files inside ``reports/`` are served, checked on the opened file (so a
path swapped for a link meanwhile cannot pass): no directory listings, pipes or other special
files, no symbolic link that leads outside ``reports/``, no ``..``, no name too long (404), and a
malformed path (a NUL byte, bad percent-encoding, not starting with ``/``) is answered 400; a busy
port is one line.
"""

from __future__ import annotations

import argparse
import errno
import functools
import html
import io
import re
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

from engine.cli import UsageError, add_root_argument, catalog_root, command, existing_root
from storage.confined_open import open_inside
from storage.layout import DataRoot

HOST = "127.0.0.1"


def report_rounds(root: DataRoot) -> list[int]:
    """Rounds that have a dashboard, newest first."""
    found = []
    for path in root.path.glob("reports/round=*/dashboard.html"):
        match = re.fullmatch(r"round=(\d+)", path.parent.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found, reverse=True)


class DashboardHandler(SimpleHTTPRequestHandler):
    """Files under ``ROOT/reports`` plus the generated index and ``/latest``; every file is opened
    once and checked on the open descriptor (``storage.confined_open``), never checked then opened."""

    root: DataRoot

    def _request_path(self) -> str | None:
        """The request's decoded path, or None after answering 400 (malformed)."""
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            path = urllib.parse.unquote(raw, errors="strict")
        except UnicodeDecodeError:
            path = None
        if path is None or "\x00" in path or not path.startswith("/"):
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed path")
            return None
        return path

    def send_head(self) -> BinaryIO | None:
        """Answer the headers of GET and HEAD; returns the body to copy (closed by the caller), or
        None after an error answer."""
        path = self._request_path()
        if path is None:
            return None
        if path in ("/", "/index.html"):
            return self._index()
        if path == "/latest":
            rounds = report_rounds(self.root)
            if not rounds:
                self.send_error(HTTPStatus.NOT_FOUND, "no dashboard yet; run `fld dashboard`")
                return None
            path = f"/round={rounds[0]}/dashboard.html"
        opened = open_inside(Path(self.directory), path)
        if opened is None:  # missing, a folder, a pipe, a link out of reports/, a name too long
            self.send_error(HTTPStatus.NOT_FOUND, "no such dashboard file")
            return None
        body, info = opened
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(info.st_size))
        self.send_header("Last-Modified", self.date_time_string(info.st_mtime))
        self.end_headers()
        return body

    def _index(self) -> BinaryIO:
        rounds = report_rounds(self.root)
        items = "".join(f'<li><a href="/round={r}/dashboard.html">round {r}</a></li>' for r in rounds)
        body = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>fld dashboards</title></head><body>"
                f"<h1>fld dashboards of {html.escape(str(self.root.path))}</h1>"
                f"<p><a href='/latest'>latest</a></p><ul>{items or '<li>none yet</li>'}</ul></body></html>")
        data = body.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)

    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:
        """Copy the body; a client that hangs up mid-transfer (a cancelled load, a client that read
        the status only) ends this answer quietly instead of printing a traceback."""
        try:
            super().copyfile(source, outputfile)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


def make_server(root: DataRoot, port: int = 8765) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:``port`` (0: any free port) serving ``root``'s dashboards."""
    reports = root.path / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    handler = type("BoundDashboardHandler", (DashboardHandler,), {"root": root})
    return ThreadingHTTPServer((HOST, port), functools.partial(handler, directory=str(reports)))


@command("dashboard", help="write a round's data-quality dashboard (one self-contained HTML page)")
def declare_dashboard(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--round", type=int, help="round to show (default: the latest curated round)")
    parser.add_argument("--out", help="output .html (default ROOT/reports/round=R/dashboard.html)")
    parser.add_argument("--gallery", type=int, default=12, help="images in the gallery (default 12)")
    parser.add_argument("--gallery-rows", type=int, default=200,
                        help="rows drawn per gallery image, kept and dropped each (default 200)")
    parser.add_argument("--pipeline", help="spaCy pipeline for Table 3 (default: the round's configured one)")

    def run(args: argparse.Namespace) -> int:
        from engine.report.dashboard import DashboardConfig, build_dashboard

        root = catalog_root(args.root)
        if args.round is not None and args.round < 0:
            raise UsageError(f"--round must be >= 0, got {args.round}")
        config = DashboardConfig(gallery_images=args.gallery, gallery_rows=args.gallery_rows, pipeline=args.pipeline)
        print(build_dashboard(root, args.round, Path(args.out) if args.out else None, config))
        return 0

    return run


@command("serve", help="serve the data root's dashboards on 127.0.0.1 (Ctrl-C to stop)")
def declare_serve(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")

    def run(args: argparse.Namespace) -> int:
        root = existing_root(args.root)
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be within 0..65535, got {args.port}")
        try:
            server = make_server(root, args.port)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UsageError(f"port {args.port} on {HOST} is busy; choose another with --port (0: any free port)") from None
            raise
        print(f"serving {root.path / 'reports'} on http://{HOST}:{server.server_address[1]}/ (latest: /latest)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped")
        finally:
            server.server_close()
        return 0

    return run
