"""The release's dataset card (``README.md``), written with ``huggingface_hub``'s card helpers.

The YAML header is a :class:`huggingface_hub.DatasetCardData` (so the Hub and ``datasets`` read
it as they write it): the license, ``configs`` (``default``: the per-image ``hf/`` files when
the release holds the images, else the annotation rows; ``annotations``: the rows),
``dataset_info`` of ``default`` (features, and per split ``num_bytes`` and ``num_examples``,
plus ``download_size`` and ``dataset_size``), size category and tags. The body says what the
release holds, Table 2 / Table 3 beside FLD-5B, the drops per rule and reason, sources and
settings. The card is a pure function of the manifest and the statistics (reproducible).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from huggingface_hub import DatasetCard, DatasetCardData

from engine.release.images import WDS_IMAGE_KEY

#: upper bounds of the Hub's size categories
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def yaml_features(fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``dataset_info.features`` (the ``datasets`` YAML list form) of a features dict
    (``hf_dataset.features()``)."""
    return [{"name": name, **_yaml_feature(feature)} for name, feature in fields.items()]


def _yaml_feature(feature: Mapping[str, Any]) -> dict[str, Any]:
    kind = feature.get("_type")
    if kind == "Image":
        return {"dtype": "image"}
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind == "List":
        inner = feature["feature"]
        return {"list": inner["dtype"] if inner.get("_type") == "Value" else yaml_features(inner)}
    return {"struct": yaml_features(feature)}


def size_category(n: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if n < bound), "n>1T")


def card_data(manifest: Mapping[str, Any]) -> DatasetCardData:
    """The card's YAML header (module docstring)."""
    from engine.release.hf_dataset import features

    hf = manifest.get("hf") or {}
    splits = hf.get("splits") or {}
    data = {"license": "other", "size_categories": [size_category(int(manifest["images"]))],
            "task_categories": ["object-detection", "image-to-text"],
            "tags": ["florence-2", "fld-5b", "fld-engine"]}
    annotations = {"config_name": "annotations", "data_files": [{"split": "train", "path": "data/*.parquet"}]}
    if splits:
        default = {"config_name": "default",
                   "data_files": [{"split": split, "path": f"hf/{split}-*.parquet"} for split in sorted(splits)]}
        data["configs"] = [default, annotations]
        data["dataset_info"] = {
            "config_name": "default", "features": yaml_features(features()),
            "splits": [{"name": split, "num_bytes": int(size["num_bytes"]), "num_examples": int(size["num_examples"])}
                       for split, size in sorted(splits.items())],
            "download_size": int(hf["download_size"]), "dataset_size": sum(int(s["num_bytes"]) for s in splits.values())}
    else:
        data["configs"] = [{**annotations, "config_name": "default"}]
    return DatasetCardData(**data)


def _cell(text: str) -> str:
    """A drop reason as a table cell: ids folded by the grouping shown as ``…`` (an ``<id>``
    would read as an unfilled template, and as an HTML tag where Markdown is rendered)."""
    return text.replace("<id>", "…").replace("|", "\\|")


def card_markdown(round_: int, manifest: Mapping[str, Any], stats: Mapping[str, Any], stats_markdown: str) -> str:
    """The release's dataset card (module docstring) from the release's manifest (its ``hf``
    entry: per split sizes and the ``hf/`` files' bytes) and round statistics."""
    rows = "\n".join(f"| `{rel}` | {n} |" for rel, n in manifest["row_counts"].items())
    kinds = "\n".join(f"| {kind} | {n} |" for kind, n in manifest["rows_by_kind"].items())
    drops = "\n".join(f"| {d['rule']} | {_cell(d['reason'])} | {d['count']} |" for d in stats["drops"]) or "| - | - | 0 |"
    models = "\n".join(f"| {m['round']} | `{m['version']}` | {m['promoted']} | {m['reason']} |"
                       for m in manifest["model_checkpoints"]) or "| - | - | - | - |"
    annotators = "\n".join(f"- `{a}`" for a in manifest["annotators"])
    settings = json.dumps(manifest["filter_settings"], indent=1, sort_keys=True, allow_nan=False)
    body = f"""# fld-engine dataset release (round {round_})

FLD-5B-style annotations (as in Florence-2) curated by fld-engine: captions (text
annotations), regions with text (region-text pairs) and grounded phrases (text-phrase-region
triplets) of {manifest['images']} images, from the curated set of round {round_} (rows first
produced in rounds {', '.join(str(r) for r in manifest['source_rounds'])}). Every ingested image is here;
{manifest.get('annotated_images', manifest['images'])} of them have rows (`annotated`). Geometry is in absolute pixels of the
upright image; boxes are x0, y0, x1, y1; OCR quads clockwise from the top-left; masks are COCO
compressed RLE. `score` is a model's confidence: null for given labels
(people's rows, existing COCO labels) and rows their source did not score, never the prior
curation weighed them with (COCO writes 1.0 for those).

## Files

| file | rows (coco.json: region annotations; webdataset: samples) |
|---|---|
{rows}

Images: `images/` (each image's bytes as ingested, under its own file name made safe and
unique: a name taken twice gets `-` and 8 hex digits of the image's sha256;
`images/index.parquet` maps each sha256 to its file name and source key), `hf/` (one row per
image with its annotations nested: `load_dataset(THIS_FOLDER)`), and `webdataset/shard-*.tar`
(mode `{manifest['image_mode']}`), one sample per image keyed by its sha256: the image under the
one key `{WDS_IMAGE_KEY}` whatever its format (the bytes exactly as ingested, so a PNG stays a PNG;
decoders read the format from the bytes; the JSON says `format` and `file_name`) and a JSON with
its rows, so `load_dataset("webdataset", data_files="webdataset/*.tar")` and the `webdataset`
package read every sample. Exports: `exports/coco.json`
(COCO instances, every one with a `score`; {manifest.get('coco_segmentations', 0)} of them have a
`segmentation` (an RLE mask or polygons), the others a box only; the input COCO labels' image ids,
file names and category ids are kept when the round had them; every image, `fld_annotated`
marking those with rows; plus `captions` and `grounded_phrases`; its `file_name`s are the files
in `images/`) and
`florence2/{{train,validation}}.jsonl` (`image` relative to the file, `prefix` = task prompt,
`suffix` = target). `manifest.json` holds every file's
sha256; `fld release verify` checks them.

| kind | rows |
|---|---|
{kinds}

## Statistics (FLD-5B: Florence-2 paper, Tables 2 and 3)

Tokens are word tokens: runs of letters and digits, split at whitespace and punctuation.

{stats_markdown}
## Curation drops (round {round_})

Reasons are grouped: an annotation id is shown `…`, a quoted text `'…'`, a measured value `N`.

| rule | reason | rows |
|---|---|---|
{drops}

## Sources

Annotators (`source@version`):
{annotators}

| model round | version | promoted | reason |
|---|---|---|---|
{models}

Filter settings (the round's curation config):

```json
{settings}
```

## Loading

```python
from datasets import load_dataset; load_dataset(THIS_FOLDER)  # one row per image
load_dataset("webdataset", data_files="webdataset/*.tar")
load_dataset("parquet", data_files="data/*.parquet")  # one row per annotation
import duckdb; duckdb.sql("select kind, count(*) from 'data/*.parquet' group by kind")
from pycocotools.coco import COCO; COCO("exports/coco.json")
```
"""
    return str(DatasetCard(f"---\n{card_data(manifest).to_yaml()}\n---\n{body}"))
