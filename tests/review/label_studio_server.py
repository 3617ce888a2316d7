"""A real Label Studio server for tests: started on 127.0.0.1 from its own venv and driven over its HTTP API.

Label Studio's pins do not resolve beside the engine's, so it lives in ``.venv-label-studio``
(``bash scripts/install_label_studio.sh``); ``label_studio_installed()`` tells whether it is there.

``running_label_studio(workdir, document_root)`` starts ``label-studio start`` with its data (SQLite,
secret key, media) under ``workdir``, one superuser whose legacy API token the client sends as
``Authorization: Token <token>``, and local file serving rooted at ``document_root``. Label Studio serves
``/data/local-files/?d=<path relative to document_root>`` only for files that lie under the path of a
Local Files storage of a project the user can see, and that path must be a proper subdirectory of
``document_root``: call ``LabelStudioClient.add_local_files_storage`` for the folder holding the images.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL_STUDIO_VENV = REPO_ROOT / ".venv-label-studio"
LABEL_STUDIO_EXECUTABLE = LABEL_STUDIO_VENV / "bin" / "label-studio"
INSTALLED_MARKER = LABEL_STUDIO_VENV / ".fld-installed"
#: a database with every migration applied (scripts/install_label_studio.sh makes it): a server started on
#: a copy of it skips the minute of migrations
MIGRATED_DATABASE = LABEL_STUDIO_VENV / "migrated" / "label_studio.sqlite3"

USERNAME = "fld-review@localhost"
PASSWORD = "fld-review-password"
STARTUP_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 6000
TASK_PAGE_SIZE = 100


def label_studio_installed() -> bool:
    """Whether scripts/install_label_studio.sh finished: its marker file and the executable are present."""
    return INSTALLED_MARKER.is_file() and os.access(LABEL_STUDIO_EXECUTABLE, os.X_OK)


class LabelStudioClient:
    """The HTTP API of one running Label Studio server, authenticated with a legacy user token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def _request(self, method: str, url_path: str, **kwargs: Any) -> requests.Response:
        """Send one request to ``url_path`` (starting with /) and raise with the server's answer on any non-2xx status."""
        response = self.session.request(method, self.base_url + url_path, timeout=REQUEST_TIMEOUT_S, **kwargs)
        if not response.ok:
            raise RuntimeError(f"{method} {url_path} -> HTTP {response.status_code}: {response.text[:2000]}")
        return response

    def whoami(self) -> dict:
        """The user the token belongs to (checks that token authentication works)."""
        return self._request("GET", "/api/current-user/whoami").json()

    def create_project(self, title: str, label_config: str) -> int:
        """Create a project with this labeling config (Label Studio XML); returns its id."""
        return int(self._request("POST", "/api/projects/", json={"title": title, "label_config": label_config}).json()["id"])

    def add_local_files_storage(self, project_id: int, path: Path, title: str = "local images") -> int:
        """Connect a Local Files import storage at ``path`` (absolute, a subdirectory of the document root) to the project.

        Without one, /data/local-files/ answers 404 for every file, even with local file serving enabled.
        The storage is not synced, so it adds no tasks; returns the storage id.
        """
        payload = {"project": project_id, "path": str(Path(path).resolve()), "title": title, "use_blob_urls": False}
        return int(self._request("POST", "/api/storages/localfiles/", json=payload).json()["id"])

    def import_tasks(self, project_id: int, tasks: list[dict]) -> None:
        """Import tasks (each with ``data`` and optionally ``predictions``) into the project, synchronously."""
        answer = self._request("POST", f"/api/projects/{project_id}/import", json=tasks).json()
        if answer.get("task_count") != len(tasks):
            raise RuntimeError(f"import of {len(tasks)} tasks into project {project_id} answered {answer}")

    def list_tasks(self, project_id: int) -> list[dict]:
        """All tasks of the project, page by page, each with ``id``, ``data`` (as stored), ``predictions`` and ``annotations``."""
        tasks: list[dict] = []
        page = 1
        while True:
            params = {"project": project_id, "page": page, "page_size": TASK_PAGE_SIZE, "fields": "all", "resolve_uri": "false"}
            answer = self._request("GET", "/api/tasks/", params=params).json()
            tasks.extend(answer["tasks"])
            if not answer["tasks"] or len(tasks) >= answer["total"]:
                return tasks
            page += 1

    def submit_annotation(self, task_id: int, result: list[dict], parent_prediction: int | None = None) -> dict:
        """Submit a completed annotation with these result regions, as the labeling UI's Submit button does; returns it.

        ``parent_prediction`` is the id of the prediction the annotator started from, if any.
        """
        body = {"result": result, "was_cancelled": False, "ground_truth": False, "lead_time": 1.0, "parent_prediction": parent_prediction}
        return self._request("POST", f"/api/tasks/{task_id}/annotations/", json=body).json()

    def export_json(self, project_id: int) -> list[dict]:
        """The project's annotated tasks in Label Studio's standard JSON export (what the Export button downloads as JSON)."""
        return self._request("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"}).json()

    def fetch(self, url_path: str) -> bytes:
        """The body of an authenticated GET of ``url_path`` on the server, e.g. ``/data/local-files/?d=images/a.png``."""
        return self._request("GET", url_path).content


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(data_dir: Path, document_root: Path) -> dict[str, str]:
    """The server's environment: ours without Label Studio settings or venv, plus the settings this harness relies on.

    Label Studio reads each setting from LABEL_STUDIO_<NAME>, then HEARTEX_<NAME>, then <NAME>, so the
    prefixed names set here win over stray plain ones such as HOST, DEBUG or USERNAME.
    """
    dropped = ("LABEL_STUDIO_", "HEARTEX_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    for key in ("PYTHONPATH", "PYTHONHOME", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"):
        env.pop(key, None)
    env["VIRTUAL_ENV"] = str(LABEL_STUDIO_VENV)
    env["PATH"] = f"{LABEL_STUDIO_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_DATABASE_NAME": str(data_dir / "label_studio.sqlite3"),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_HOST": "",
            "LABEL_STUDIO_DEBUG": "false",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }
    )
    return env


def server_command(port: int, data_dir: Path, token: str) -> list[str]:
    """The ``label-studio start`` command line: 127.0.0.1:port, no browser, one superuser with a known legacy token."""
    return [
        str(LABEL_STUDIO_EXECUTABLE),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--username",
        USERNAME,
        "--password",
        PASSWORD,
        "--user-token",
        token,
        "--enable-legacy-api-token",
        "--log-level",
        "INFO",
    ]


def log_tail(log_path: Path) -> str:
    """The last characters of the server's log."""
    try:
        return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError as error:
        return f"<no log: {error}>"


def wait_until_ready(process: subprocess.Popen, client: LabelStudioClient, log_path: Path, timeout_s: float) -> None:
    """Poll /health until the server answers, then check the token; raise with the log tail on exit or timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"label-studio exited with code {process.returncode} before it was ready; log:\n{log_tail(log_path)}")
        try:
            if client.session.get(client.base_url + "/health", timeout=5).ok:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"label-studio not ready at {client.base_url} after {timeout_s:.0f} s; log:\n{log_tail(log_path)}")
        time.sleep(1.0)
    try:
        user = client.whoami()
    except RuntimeError as error:
        raise RuntimeError(f"label-studio is up but the legacy token is refused: {error}; log:\n{log_tail(log_path)}") from error
    if user.get("email") != USERNAME:
        raise RuntimeError(f"the server at {client.base_url} is not ours (whoami: {user}); log:\n{log_tail(log_path)}")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, wait, and SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_label_studio(workdir: Path, document_root: Path, timeout_s: float = STARTUP_TIMEOUT_S) -> Iterator[LabelStudioClient]:
    """Start a fresh Label Studio server for the block and yield a client for it; stop it afterwards.

    Its data lives in ``workdir/label-studio-data`` and its output goes to ``workdir/label-studio.log``.
    Local files are served from ``document_root`` (see ``LabelStudioClient.add_local_files_storage``).
    """
    if not label_studio_installed():
        raise RuntimeError(f"Label Studio is not installed in {LABEL_STUDIO_VENV}: run bash scripts/install_label_studio.sh")
    workdir = Path(workdir).resolve()
    data_dir = workdir / "label-studio-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if MIGRATED_DATABASE.is_file():
        shutil.copyfile(MIGRATED_DATABASE, data_dir / "label_studio.sqlite3")
    log_path = workdir / "label-studio.log"
    token = secrets.token_hex(20)
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(port, data_dir, token),
            cwd=workdir,
            env=server_environment(data_dir, Path(document_root).resolve()),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = LabelStudioClient(f"http://127.0.0.1:{port}", token)
        wait_until_ready(process, client, log_path, timeout_s)
        yield client
    finally:
        stop_process_group(process)
