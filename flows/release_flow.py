"""The ``release`` flow: a reproducible dataset release of a round, built then verified."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from engine.cli import data_root
from engine.release.build import ReleaseConfig, build_release, verify_release
from flows.quiet_errors import quiet_user_errors
from flows.server_guard import guard_server

quiet_user_errors()  # a full disk or a config problem: one line, no traceback
guard_server()  # Prefect's temporary API server exits when this process dies


@task(name="build-release", persist_result=False, cache_policy=NO_CACHE)
def build_task(root: str, round_number: int, name: str, config: ReleaseConfig) -> dict[str, Any]:
    return build_release(data_root(root), round_number, name, config)


@task(name="verify-release", persist_result=False, cache_policy=NO_CACHE)
def verify_task(root: str, name: str) -> list[str]:
    return verify_release(data_root(root), name)


@flow(name="fld-release", log_prints=True, flow_run_name="release of {root}")
def release_flow(root: str, round_number: int, name: str, images: str = "webdataset") -> dict[str, Any]:
    """Build ``releases/NAME`` from round ``round_number``'s curated set and verify every hash."""
    manifest = build_task(root, round_number, name, ReleaseConfig(images=images))
    problems = verify_task(root, name)
    if problems:
        raise RuntimeError(f"release {name} does not verify: {'; '.join(problems)}")
    print(f"release {name}: {manifest['path']} (manifest sha256 {manifest['manifest_sha256']})")
    return {"manifest_sha256": manifest["manifest_sha256"], "path": manifest["path"]}
