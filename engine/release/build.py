"""Reproducible, immutable dataset releases of a round's curated set: ``ROOT/releases/NAME/``.

Layout of a release (every path relative to its folder)::

    data/curated-00000-of-0000N.parquet   the curated rows (CURATED schema, ``score`` as released),
                                          sorted by (image_id, kind, annotation_id), zstd, fixed
                                          row groups
    images/index.parquet                  image_id, file_name, width, height, format, num_bytes,
                                          annotated, member (``webdataset/shard-K.tar#ID.jpg``),
                                          source shard and key
    images/<file name>                    each image's bytes as ingested (``webdataset`` mode), under
                                          its own name made safe and unique (engine.release.names)
    webdataset/shard-00000.tar ...        per image: ``ID.jpg`` (bytes as ingested, whatever the
                                          format) and ``ID.json`` (name, size, rows), the same keys in
                                          every sample (engine.release.images); ``reference`` mode:
                                          JSON-only samples
    exports/coco.json                     COCO instances + captions + grounded phrases
    hf/{train,validation}-K-of-N.parquet  one row per image: the image (bytes) and its annotations
                                          nested, what ``load_dataset(RELEASE)`` gives (hf_dataset)
    florence2/{train,validation}.jsonl    Florence-2 examples: ``image`` (relative to the file),
                                          ``prefix`` (task prompt), ``suffix`` (target) and extras
    README.md                             dataset card (engine.release.card): YAML metadata with
                                          split sizes, Table 2 / 3 beside FLD-5B, drops, sources
    manifest.json                         sha256 and size of every file above, row counts, images
                                          (and annotated ones), hf split sizes, source rounds,
                                          annotators, configs, models, filter settings

Every ingested ``ok`` image is released, with or without curated rows (``annotated``), and
``score`` is a model's confidence, never a curation prior (:mod:`engine.release.scores`).

Portable: every path a release file holds is relative (to the release folder for its own files,
to the data root it was built from for sources, configs and checkpoints; ``..`` where outside).
Reproducible: no file holds a time, a release name or a temp path, JSON keys are sorted and
tar members have fixed metadata, so building the same round of the same root twice gives
byte-identical files. Immutable: a release is built in a hidden staging folder and renamed
into place; an existing name is refused, files are made read-only, and ``verify`` re-hashes
every file against the manifest (and the manifest against the catalog's ``releases`` row).

Bounded memory: the build streams the round in batches of whole images from ordered DuckDB
queries and writes every file as it goes (:mod:`engine.release.passes`); what needs every image
(names, tar positions, COCO ids, splits) is in tables of a scratch DuckDB file in a hidden work
folder beside the staging one (:mod:`engine.release.batching`). ``ReleaseBatching`` sets how much
is held at once and never changes a byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.release.batching import ReleaseBatching, open_scratch
from engine.release.card import card_markdown
from engine.release.coco import CocoLabelsError
from engine.release.exports import dumps
from engine.release.passes import write_files, writing
from engine.report.stats import markdown_stats, round_stats
from storage.catalog import Catalog
from storage.layout import DataRoot
from storage.schema import utc_now

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
IMAGE_MODES = ("webdataset", "reference")
MANIFEST, CARD, FORMAT = "manifest.json", "README.md", "fld-release/1"


class ReleaseError(ValueError):
    """A release cannot be built as asked (name taken, nothing curated, image bytes changed)."""


@dataclass(frozen=True)
class ReleaseConfig:
    """``rows_per_file`` / ``row_group_size``: Parquet rows per file / per row group;
    ``images``: ``webdataset`` (bytes copied into tars) or ``reference`` (tars hold only the
    JSON, the index names the source shard and key); ``images_per_shard``: samples per tar;
    ``eval_fraction`` / ``seed``: the Florence-2 export's validation split by image id;
    ``pipeline``: spaCy pipeline for the card's Table 3 (None: the round's configured one)."""

    rows_per_file: int = 100_000
    row_group_size: int = 10_000
    images: str = "webdataset"
    images_per_shard: int = 1000
    eval_fraction: float = 0.1
    seed: int = 0
    pipeline: str | None = None

    def __post_init__(self) -> None:
        for name in ("rows_per_file", "row_group_size", "images_per_shard"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"release {name} must be an integer >= 1, got {value!r}")
        if self.images not in IMAGE_MODES:
            raise ValueError(f"release images must be one of {IMAGE_MODES}, got {self.images!r}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"release eval_fraction must be in [0, 1), got {self.eval_fraction!r}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(stage: Path, rel: str, data: bytes) -> None:
    path = stage / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _round_context(catalog: Catalog, round_: int) -> tuple[int, dict[str, Any]]:
    """(curated rows, ``{"round_config", "models"}``) of round ``round_``; :class:`ReleaseError`
    when it has no curated set."""
    (rows,) = catalog.query("select count(*) from curated where curated_round = ?", [round_])[0]
    if rows == 0:
        raise ReleaseError(f"round {round_} has no curated set; run `fld curate --round {round_}` first")
    config = catalog.query("select config from rounds where round = ?", [round_])
    models = catalog.query("select round, path, version, promoted, reason from models where round <= ? order by round",
                           [round_])
    root = str(catalog.root.path)
    return int(rows), {
        "round_config": json.loads(config[0][0]) if config and config[0][0] else None,
        "models": [{"round": int(r), "path": os.path.relpath(p, root) if p.startswith(root) else p, "version": v,
                    "promoted": bool(pr), "reason": why} for r, p, v, pr, why in models],
    }


def _check_ingested(catalog: Catalog, round_: int) -> None:
    """:class:`ReleaseError` when a curated image of round ``round_`` is not ingested ``ok``."""
    missing, first = catalog.query(
        "select count(*), min(image_id) from (select distinct image_id from curated where curated_round = ?) "
        "where image_id not in (select image_id from images where status = 'ok' and image_id is not null)",
        [round_])[0]
    if missing:
        raise ReleaseError(f"{missing} curated images are not ingested with status ok, e.g. {first}")


QUOTED_PATH = re.compile(r"'(/[^'\n]+)'")


def portable(value: Any, root: Path) -> Any:
    """``value`` with every absolute path string made relative to the data root ``root`` (``..``
    where it lies outside): no path of the building machine goes into a release."""
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/") and "\n" not in value and len(value) < 4096:
        return os.path.relpath(value, root)
    if isinstance(value, str):  # a path quoted inside a sentence ("parsed with spaCy pipeline '/...'")
        return QUOTED_PATH.sub(lambda m: repr(os.path.relpath(m.group(1), root)), value)
    return value


def build_release(root: DataRoot | str | Path, round_: int, name: str, config: ReleaseConfig = ReleaseConfig(),
                  batching: ReleaseBatching = ReleaseBatching()) -> dict[str, Any]:
    """Build ``ROOT/releases/NAME`` from round ``round_``'s curated set; returns the manifest
    (plus ``path`` and ``manifest_sha256``). Raises :class:`ReleaseError` if ``name`` exists.
    ``batching``: how much the build holds at once (never what it writes)."""
    root = root if isinstance(root, DataRoot) else DataRoot(Path(root))
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ReleaseError(f"release name {name!r} must match {NAME_PATTERN.pattern}")
    final = root.release(name)
    if final.exists():
        raise ReleaseError(f"release {name!r} already exists at {final}; releases are immutable, choose another name")
    if not root.has_catalog:
        raise ReleaseError(f"no catalog at {root.catalog}")
    temp = f"{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # a killed build's folders: swept as stale
    stage, work = final.parent / f".{name}.{temp}", final.parent / f".{name}.work.{temp}"
    try:
        with Catalog(root, read_only=True) as catalog:  # a snapshot: no round waits for the build
            if catalog.query("select 1 from releases where name = ?", [name]):
                raise ReleaseError(f"release {name!r} is recorded in the catalog; releases are immutable")
            total_rows, context = _round_context(catalog, int(round_))
            open_scratch(catalog.con, work, batching)  # first: the card's statistics run in its memory too
            stats = round_stats(catalog, int(round_), config.pipeline)
            _check_ingested(catalog, int(round_))
            stage.mkdir(parents=True)
            try:
                written = write_files(catalog.con, int(round_), total_rows, stage, work, config, batching,
                                      context["round_config"], lambda path: portable(path, root.path))
            except CocoLabelsError as error:
                raise ReleaseError(str(error)) from None
        curation = (context["round_config"] or {}).get("curation")
        manifest: dict[str, Any] = {
            "format": FORMAT, "round": int(round_), "source_rounds": sorted(written.tally.rounds),
            "row_counts": written.counts, "rows_by_kind": dict(sorted(written.tally.kinds.items())),
            "coco_segmentations": written.segmentations,
            "examples_by_split_task": written.examples, "images": written.images, "image_mode": config.images,
            "annotated_images": written.annotated, "hf": written.hf,
            "annotators": sorted(written.tally.annotators),
            "configs": portable({"release": asdict(config), "round": context["round_config"]}, root.path),
            "filter_settings": portable(curation, root.path), "drops": stats["drops"],
            "model_checkpoints": portable(context["models"], root.path),
        }
        stats = portable(stats, root.path)  # Table 3 names its spaCy pipeline
        _write(stage, CARD, card_markdown(int(round_), manifest, stats, markdown_stats(stats)).encode("utf-8"))
        manifest["files"] = {str(p.relative_to(stage)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                             for p in sorted(stage.rglob("*")) if p.is_file()}
        with writing(MANIFEST):
            _write(stage, MANIFEST, dumps(manifest, indent=1) + b"\n")
        for path in stage.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
        if final.exists():
            raise ReleaseError(f"release {name!r} appeared while building; releases are immutable")
        os.rename(stage, final)
    finally:
        for folder in (stage, work):
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
    digest = sha256_file(final / MANIFEST)
    with Catalog(root) as catalog:
        catalog.upsert("releases", [{"name": name, "round": int(round_), "path": str(final),
                                     "manifest_sha256": digest, "created_at": utc_now()}])
    return {**manifest, "path": str(final), "manifest_sha256": digest}


def release_named(root: DataRoot, name: str) -> tuple[str, Path]:
    """``(name, folder)`` of the release ``name`` of ``root``: a release name, or the path of a
    release folder, which must be a folder right under ``ROOT/releases`` (not a link out of it).
    Anything else (``../x``, a folder elsewhere) raises :class:`ReleaseError`: only the root's
    own releases are verified."""
    releases = (root.path / "releases").resolve()
    if NAME_PATTERN.fullmatch(name or ""):
        folder = root.release(name)
    else:
        folder = Path(name).expanduser().absolute()
        name = folder.name
    if not NAME_PATTERN.fullmatch(name) or folder.resolve() != releases / name:
        raise ReleaseError(f"{folder} is not a release of {root.path}: give the name of a release under "
                           f"{root.path / 'releases'} (`fld release verify --root {root.path} NAME`)")
    return name, folder


def verify_release(root: DataRoot | str | Path, name: str) -> list[str]:
    """Problems found in release ``name`` (a name, or its folder's path under ``ROOT/releases``;
    empty = verified): a file missing, added, resized or with another sha256 than the manifest
    says, or a manifest that is not the one recorded."""
    root = root if isinstance(root, DataRoot) else DataRoot(Path(root))
    name, folder = release_named(root, name)
    if not (folder / MANIFEST).is_file():
        raise ReleaseError(f"no release {name!r} at {folder} (no {MANIFEST})")
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict) or not all(
                isinstance(rel, str) and isinstance(entry, dict) and isinstance(entry.get("bytes"), int)
                and isinstance(entry.get("sha256"), str) for rel, entry in files.items()):
            raise ValueError("'files' must map each path to its bytes and sha256")
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST}: unreadable ({exc.__class__.__name__}: {exc})"]
    problems = []
    for rel, expected in sorted(files.items()):
        path = folder / rel
        if not path.is_file() or not path.resolve().is_relative_to(folder.resolve()):
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != expected["bytes"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, manifest says {expected['bytes']}")
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"{rel}: sha256 differs from the manifest")
    extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if (p.is_file() or p.is_symlink())
                   and str(p.relative_to(folder)) not in files and str(p.relative_to(folder)) != MANIFEST)
    problems += [f"{rel}: not in the manifest" for rel in extra]
    # a folder no listed file is in (an added empty folder, or one emptied): not the release built
    needed = {parent for rel in files for parent in Path(rel).parents if str(parent) != "."}
    stray = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()
                   and p.relative_to(folder) not in needed)
    problems += [f"{rel}/: a folder not in the manifest" for rel in stray]
    if root.has_catalog:
        with Catalog.reading(root) as catalog:
            recorded = catalog.query("select manifest_sha256 from releases where name = ?", [name])
        if recorded and recorded[0][0] != sha256_file(folder / MANIFEST):
            problems.append(f"{MANIFEST}: sha256 differs from the one recorded in the catalog")
    return problems
