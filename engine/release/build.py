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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.dataset.coco_eval import coco_image_ids
from engine.dataset.locations import image_locations
from engine.dataset.splits import split_of
from engine.release.card import card_markdown
from engine.release.exports import CocoSource, NonFiniteValue, coco_json, dumps, florence2_jsonl
from engine.release.hf_dataset import write_hf_dataset
from engine.release.images import write_images
from engine.release.names import release_file_names
from engine.release.scores import published_scores, unscored_ids
from engine.report.stats import markdown_stats, round_stats
from storage.catalog import Catalog
from storage.layout import DataRoot
from storage.schema import CURATED, RELEASE_IMAGE_INDEX, utc_now

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


@contextlib.contextmanager
def _writing(rel: str) -> Iterator[None]:
    """Name the file ``rel`` in a :class:`NonFiniteValue` raised while its content is made."""
    try:
        yield
    except NonFiniteValue as exc:
        raise NonFiniteValue(f"{rel}: {exc}") from None


def _write(stage: Path, rel: str, data: bytes) -> None:
    path = stage / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _read_round(catalog: Catalog, round_: int) -> tuple[pa.Table, dict[str, Any]]:
    from engine.curate.parquet_io import conform

    table = catalog.con.sql("select * exclude (curated_round) from curated where curated_round = ? "
                            "order by image_id, kind, annotation_id", params=[round_]).to_arrow_table()
    if table.num_rows == 0:
        raise ReleaseError(f"round {round_} has no curated set; run `fld curate --round {round_}` first")
    config = catalog.query("select config from rounds where round = ?", [round_])
    models = catalog.query("select round, path, version, promoted, reason from models where round <= ? order by round",
                           [round_])
    root = str(catalog.root.path)
    context = {
        "round_config": json.loads(config[0][0]) if config and config[0][0] else None,
        "models": [{"round": int(r), "path": os.path.relpath(p, root) if p.startswith(root) else p, "version": v,
                    "promoted": bool(pr), "reason": why} for r, p, v, pr, why in models],
    }
    return published_scores(conform(table, CURATED), unscored_ids(catalog, round_)), context


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


def _write_tables(stage: Path, table: pa.Table, metas: dict[str, dict], config: ReleaseConfig) -> dict[str, int]:
    counts = {}
    files = max(1, -(-table.num_rows // config.rows_per_file))
    for i in range(files):
        rel = f"data/curated-{i:05d}-of-{files:05d}.parquet"
        part = table.slice(i * config.rows_per_file, config.rows_per_file)
        (stage / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(part, stage / rel, compression="zstd", row_group_size=config.row_group_size)
        counts[rel] = part.num_rows
    index = [{"image_id": i, "file_name": m["file_name"], "width": m["width"], "height": m["height"],
              "format": m["format"], "num_bytes": m["num_bytes"], "annotated": m["annotated"],
              "member": m["member"] if config.images == "webdataset" else None,
              "source_shard": m["shard"], "source_key": m["key"]} for i, m in sorted(metas.items())]
    (stage / "images").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(index, schema=RELEASE_IMAGE_INDEX), stage / "images/index.parquet", compression="zstd")
    counts["images/index.parquet"] = len(index)
    return counts


def build_release(root: DataRoot | str | Path, round_: int, name: str,
                  config: ReleaseConfig = ReleaseConfig()) -> dict[str, Any]:
    """Build ``ROOT/releases/NAME`` from round ``round_``'s curated set; returns the manifest
    (plus ``path`` and ``manifest_sha256``). Raises :class:`ReleaseError` if ``name`` exists."""
    root = root if isinstance(root, DataRoot) else DataRoot(Path(root))
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ReleaseError(f"release name {name!r} must match {NAME_PATTERN.pattern}")
    final = root.release(name)
    if final.exists():
        raise ReleaseError(f"release {name!r} already exists at {final}; releases are immutable, choose another name")
    if not root.has_catalog:
        raise ReleaseError(f"no catalog at {root.catalog}")
    with Catalog.reading(root) as catalog:
        if catalog.query("select 1 from releases where name = ?", [name]):
            raise ReleaseError(f"release {name!r} is recorded in the catalog; releases are immutable")
        table, context = _read_round(catalog, int(round_))
        ids = sorted(set(table["image_id"].to_pylist()))
        locations = image_locations(catalog)  # every ingested ok image, annotated or not
        stats = round_stats(catalog, int(round_), config.pipeline)
    missing = sorted(set(ids) - set(locations))
    if missing:
        raise ReleaseError(f"{len(missing)} curated images are not ingested with status ok, e.g. {missing[0]}")
    rows = table.to_pylist()
    rows_by_image: dict[str, list] = {}
    for row in rows:
        rows_by_image.setdefault(row["image_id"], []).append(row)
    stage = final.parent / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # a killed build: swept as stale
    try:
        stage.mkdir(parents=True)
        source = coco_source(root, context["round_config"])
        coco_names = {} if source is None else {i: source.file_names.get(theirs, "")
                                                for i, theirs in source.image_ids.items()}
        with _writing("webdataset/ (a sample's JSON)"):
            metas = write_images(stage, locations, rows_by_image, config.images == "webdataset",
                                 config.images_per_shard, release_file_names(locations, coco_names),
                                 lambda path: portable(path, root.path))
        counts = _write_tables(stage, table, metas, config)
        hf: dict[str, Any] = {}
        if config.images == "webdataset":  # the per-image dataset `load_dataset(RELEASE)` gives
            hf_counts, splits = write_hf_dataset(stage, stage / "images", metas, rows_by_image,
                                                 lambda i: split_of(i, config.eval_fraction, config.seed),
                                                 config.images_per_shard)
            counts.update(hf_counts)
            hf = {"splits": splits, "download_size": sum((stage / rel).stat().st_size for rel in hf_counts)}
        with _writing("exports/coco.json"):
            coco = coco_json(rows, metas, source)
        _write(stage, "exports/coco.json", coco)
        coco_annotations = json.loads(coco)["annotations"]
        counts["exports/coco.json"] = len(coco_annotations)
        segmentations = sum("segmentation" in a for a in coco_annotations)
        counts["webdataset"] = len(metas)
        with _writing("florence2/"):
            by_split, examples = florence2_jsonl(rows, metas, config.eval_fraction, config.seed)
        for split, jsonl in by_split.items():
            _write(stage, f"florence2/{split}.jsonl", jsonl)
            counts[f"florence2/{split}.jsonl"] = sum(n for key, n in examples.items() if key.startswith(f"{split}/"))
        curation = (context["round_config"] or {}).get("curation")
        manifest: dict[str, Any] = {
            "format": FORMAT, "round": int(round_),
            "source_rounds": sorted(set(table["round"].to_pylist())),
            "row_counts": counts, "rows_by_kind": dict(sorted(_kinds(rows).items())),
            "coco_segmentations": segmentations,
            "examples_by_split_task": examples, "images": len(metas), "image_mode": config.images,
            "annotated_images": sum(m["annotated"] for m in metas.values()), "hf": hf,
            "annotators": sorted({f"{r['source']}@{r['source_version']}" for r in rows}),
            "configs": portable({"release": asdict(config), "round": context["round_config"]}, root.path),
            "filter_settings": portable(curation, root.path), "drops": stats["drops"],
            "model_checkpoints": portable(context["models"], root.path),
        }
        stats = portable(stats, root.path)  # Table 3 names its spaCy pipeline
        _write(stage, CARD, card_markdown(int(round_), manifest, stats, markdown_stats(stats)).encode("utf-8"))
        manifest["files"] = {str(p.relative_to(stage)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                             for p in sorted(stage.rglob("*")) if p.is_file()}
        with _writing(MANIFEST):
            _write(stage, MANIFEST, dumps(manifest, indent=1) + b"\n")
        for path in stage.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
        if final.exists():
            raise ReleaseError(f"release {name!r} appeared while building; releases are immutable")
        os.rename(stage, final)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    digest = sha256_file(final / MANIFEST)
    with Catalog(root) as catalog:
        catalog.upsert("releases", [{"name": name, "round": int(round_), "path": str(final),
                                     "manifest_sha256": digest, "created_at": utc_now()}])
    return {**manifest, "path": str(final), "manifest_sha256": digest}


def coco_source(root: DataRoot, round_config: dict[str, Any] | None) -> CocoSource | None:
    """The COCO identities of the round's ``coco_labels`` input (its file, read again), or None."""
    path = ((round_config or {}).get("annotators") or {}).get("coco_labels", {}).get("path")
    if not path or not Path(path).is_file():
        return None
    try:
        coco = json.loads(Path(path).read_text(encoding="utf-8"))
        return CocoSource(image_ids=coco_image_ids(coco, image_locations(root)),
                          file_names={int(i["id"]): str(i.get("file_name", "")) for i in coco["images"]},
                          categories=tuple(coco.get("categories", [])))
    except (ValueError, KeyError, TypeError) as error:
        raise ReleaseError(f"the round's COCO labels {path} cannot be read again: {error}") from None


def _kinds(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        key = row["kind"] + (f":{row.get('granularity') or row.get('region_type')}"
                             if row.get("granularity") or row.get("region_type") else "")
        out[key] = out.get(key, 0) + 1
    return out


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
