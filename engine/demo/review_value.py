"""Is the review ranking worth a person's time? Top-ranked images against random ones, on the demo.

Evaluation only (it reads ground truth; nothing the engine decides does). For the last curated
round of a demo root, with a budget of ``fraction`` of its images:

1. ``fld review plan``'s ranking picks the top images; ``draws`` seeded random samples of the
   same size are the baseline.
2. For each selection, in a copy of the root: the selection is exported as Label Studio tasks,
   a simulated person (standing in for people, built from ground truth) corrects each task:
   a box that matches a true box of its class (IoU >= 0.5) is kept, a box that overlaps a true
   box of another class is relabelled and snapped to it, any other box is deleted, and every
   true box left unmatched is drawn; OCR lines and captions are left as shown. The export is
   imported and the next round curated, exactly as ``fld review import`` and a round would.
3. ``wrong boxes`` of a curated set: object boxes matching no true box of their class
   (IoU >= 0.5, each used once) plus true boxes no curated box matches. ``fixed`` = wrong
   boxes before - after, over the whole set; for scale, the wrong boxes on the ``budget``
   images that hold the most (what an oracle would pick).

``python -m engine.demo.review_value --root ROOT`` prints one line per selection and, last,
both figures.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.curate.config import CurationConfig
from engine.curate.curation import curate_round
from engine.curate.parquet_io import read_curated
from engine.dataset.coco_eval import coco_image_ids
from engine.dataset.locations import image_locations
from engine.report.loop_quality import _coco_boxes, _norm, match
from engine.review.config import ReviewConfig
from engine.review.export import export_label_studio
from engine.review.importing import import_review
from engine.review.plan import rank_images, round_thresholds
from storage.atomic import write_parquet_atomic
from storage.geometry import box_iou_matrix
from storage.layout import DataRoot
from storage.schema import REVIEW_QUEUE, table_from_rows

Box = tuple[str, list[float]]


def last_curated_round(root: DataRoot) -> int:
    rounds = [int(p.name.split("=", 1)[1]) for p in (root.path / "curated").glob("round=*") if any(p.glob("part-*"))]
    if not rounds:
        raise ValueError(f"{root.path} has no curated round: run `fld demo` first")
    return max(rounds)


def truth_by_image(root: DataRoot, ground_truth: Path) -> dict[str, list[Box]]:
    """Our image id -> its true (label, box) of the shape classes."""
    truth = json.loads(ground_truth.read_text())
    shapes = {c["id"]: _norm(c["name"]) for c in truth["categories"] if c["name"] != "text"}
    boxes = _coco_boxes(truth, shapes)
    return {image: boxes.get(coco, []) for image, coco in coco_image_ids(truth, image_locations(root)).items()}


def curated_boxes(root: DataRoot, round_: int) -> dict[str, list[tuple[str, str, list[float]]]]:
    """image -> (annotation id, label, box) of the round's curated object boxes."""
    out: dict[str, list[tuple[str, str, list[float]]]] = {}
    table = read_curated(root, round_)
    for row in table.to_pylist() if table is not None else []:
        if row["kind"] == "region" and row["region_type"] == "object" and not row["parent_id"] and row["bbox"]:
            out.setdefault(row["image_id"], []).append((row["annotation_id"], _norm(row["label"] or row["text"]),
                                                        list(row["bbox"])))
    return out


def wrong_boxes(curated: dict[str, list[tuple[str, str, list[float]]]], truth: dict[str, list[Box]]) -> int:
    """Curated boxes matching no true box of their class plus true boxes nothing matches."""
    wrong = 0
    for image, gt in truth.items():
        mine = [(label, box) for _, label, box in curated.get(image, []) if label != "text"]  # OCR words are not shapes
        hit, _ = match(mine, gt)
        wrong += int((hit < 0).sum()) + len(gt) - int((hit >= 0).sum())
    return wrong


def corrected_result(result: list[dict[str, Any]], gt: list[Box], width: int, height: int) -> list[dict[str, Any]]:
    """The simulated person's result for one task (see the module docstring)."""
    objects = [item for item in result if item["from_name"] == "object"]
    others = [item for item in result if item["from_name"] not in ("object", "mask")]

    def box_of(item: dict[str, Any]) -> list[float]:
        v = item["value"]
        return [v["x"] * width / 100, v["y"] * height / 100, (v["x"] + v["width"]) * width / 100,
                (v["y"] + v["height"]) * height / 100]

    predicted = [(_norm(item["value"]["rectanglelabels"][0]), box_of(item)) for item in objects]
    hit, _ = match(predicted, gt)
    used = set(hit[hit >= 0].tolist())
    out = [item for k, item in enumerate(objects) if hit[k] >= 0]
    for k, item in enumerate(objects):
        if hit[k] >= 0 or not gt:
            continue
        free = [j for j in range(len(gt)) if j not in used]
        if not free:
            continue
        iou = box_iou_matrix(np.array([predicted[k][1]]), np.array([gt[j][1] for j in free]))[0]
        if iou.max() >= 0.5:
            j = free[int(iou.argmax())]
            used.add(j)
            out.append(_object_item(item["id"], gt[j], width, height))
    out += [_object_item(f"drawn{j}", gt[j], width, height) for j in range(len(gt)) if j not in used]
    return out + others


def _object_item(region_id: str, box: Box, width: int, height: int) -> dict[str, Any]:
    label, (x0, y0, x1, y1) = box
    return {"id": region_id, "from_name": "object", "to_name": "image", "type": "rectanglelabels",
            "original_width": width, "original_height": height,
            "value": {"x": 100 * x0 / width, "y": 100 * y0 / height, "width": 100 * (x1 - x0) / width,
                      "height": 100 * (y1 - y0) / height, "rotation": 0, "rectanglelabels": [label]}}


def review_selection(root: DataRoot, round_: int, images: list[str], truth: dict[str, list[Box]],
                     curation: CurationConfig, work: Path) -> int:
    """Wrong boxes of the whole curated set after people corrected ``images`` (in a copy of ``root``)."""
    copy = DataRoot(work / "root")
    shutil.copytree(root.path, copy.path, ignore=shutil.ignore_patterns("releases", "reports", "models", "*.lock"))
    queue = [{"round": round_, "rank": k + 1, "image_id": image, "priority": 0.0, "rows": 0, "disputed_labels": 0,
              "one_source": 0, "near_threshold": 0, "borderline_drops": 0, "reasons": []} for k, image in enumerate(images)]
    write_parquet_atomic(table_from_rows(queue, REVIEW_QUEUE), copy.review_queue(round_))
    export_label_studio(copy, round_, work / "ls")
    tasks = json.loads((work / "ls" / "tasks.json").read_text())
    exported = []
    for k, task in enumerate(tasks):
        data = task["data"]
        result = corrected_result(task["predictions"][0]["result"], truth.get(data["fld_image_id"], []),
                                  data["fld_width"], data["fld_height"])
        exported.append({"id": k, "data": data, "predictions": task["predictions"],
                         "annotations": [{"id": k, "was_cancelled": False, "result": result,
                                          "created_at": "2026-01-01T00:00:00Z"}]})
    (work / "export.json").write_text(json.dumps(exported))
    summary = import_review(copy, work / "export.json")
    curate_round(copy, summary.target_round, curation)
    return wrong_boxes(curated_boxes(copy, summary.target_round), truth)


def review_value(root: DataRoot, ground_truth: Path, fraction: float = 0.1, draws: int = 5, seed: int = 0,
                 curation: CurationConfig | None = None) -> dict[str, Any]:
    """Wrong boxes fixed by reviewing the top ``fraction`` of images against random samples."""
    round_ = last_curated_round(root)
    curation = curation or _round_curation(root, round_)
    truth = truth_by_image(root, ground_truth)
    ranked = [r["image_id"] for r in rank_images(root, round_, round_thresholds(root, round_, curation.confidence),
                                                  ReviewConfig())]
    budget = max(1, round(fraction * len(ranked)))
    before = wrong_boxes(curated_boxes(root, round_), truth)
    rng = random.Random(seed)
    images = sorted(ranked)
    selections = [("top", ranked[:budget])] + [(f"random {d + 1}", rng.sample(images, budget)) for d in range(draws)]
    fixed = {}
    for name, images in selections:
        with tempfile.TemporaryDirectory(prefix="fld-review-value-") as work:
            fixed[name] = before - review_selection(root, round_, images, truth, curation, Path(work))
    randoms = [fixed[name] for name, _ in selections[1:]]
    curated = curated_boxes(root, round_)
    per_image = sorted((wrong_boxes({i: curated.get(i, [])}, {i: truth[i]}) for i in ranked if i in truth), reverse=True)
    return {"round": round_, "images": len(ranked), "budget": budget, "wrong_before": before, "fixed_top": fixed["top"],
            "fixed_random": randoms, "fixed_random_mean": float(np.mean(randoms)) if randoms else 0.0,
            "wrong_on_worst": int(sum(per_image[:budget]))}


def format_review_value(result: dict[str, Any]) -> str:
    """One line: wrong boxes fixed by the plan's top images and by random ones, honest when it does not win."""
    randoms = ", ".join(str(n) for n in result["fixed_random"])
    verdict = ("the ranking beats random" if result["fixed_top"] > result["fixed_random_mean"]
               else "the ranking does NOT beat random here")
    return (f"people in the loop (round {result['round']}, {result['wrong_before']} wrong boxes in "
            f"{result['images']} images): reviewing the top {result['budget']} by `fld review plan` fixes "
            f"{result['fixed_top']}; a random {result['budget']} fixes {result['fixed_random_mean']:.1f} "
            f"(draws: {randoms}); {verdict}; the {result['budget']} images with the most wrong boxes hold "
            f"{result['wrong_on_worst']} (a simulated person from ground truth)")


def _round_curation(root: DataRoot, round_: int) -> CurationConfig:
    """The curation config the round ran with (its recorded config), else the defaults."""
    path = root.path / "rounds" / f"round={round_}" / "config.json"
    if path.exists():
        return CurationConfig.from_dict(json.loads(path.read_text()).get("curation"))
    return CurationConfig()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.demo.review_value", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="a demo data root (after `fld demo`)")
    parser.add_argument("--ground-truth", help="COCO ground truth (default ROOT/sample/ground_truth.json)")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the images people review (default 0.1)")
    parser.add_argument("--draws", type=int, default=5, help="random samples for the baseline (default 5)")
    args = parser.parse_args(argv)
    root = DataRoot(args.root)
    truth = Path(args.ground_truth) if args.ground_truth else root.path / "sample" / "ground_truth.json"
    result = review_value(root, truth, args.fraction, args.draws)
    print(f"round {result['round']}: {result['wrong_before']} wrong boxes in {result['images']} images; "
          f"people review {result['budget']}")
    print(format_review_value(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
