"""Caption retrieval of a round: R@1 and mean similarity from the round's CLIP-style model,
checked on embeddings whose outcome is known, against a brute-force forward pass of a
test-size CLIP, and on the dashboard."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

import engine.report.captions as captions_module
from engine.dataset.locations import image_locations, read_images
from engine.report.captions import caption_retrieval, retrieval_grid, retrieval_metrics, scorer_settings
from engine.report.dashboard import DashboardConfig, build_dashboard
from storage.catalog import Catalog
from storage.decode import decode_rgb
from storage.layout import DataRoot
from storage.schema import utc_now
from tests.annotators.builders_language import save_clip

CAPTIONS_SQL = ("select image_id, annotation_id, text from curated where curated_round = 1 and kind = 'caption' "
                "and parent_id is null and trim(coalesce(text, '')) <> '' order by image_id, annotation_id")


@pytest.fixture(scope="module")
def clip_root(report_root, tmp_path_factory):
    """A copy of the two-round report root whose round 1 config names a test-size CLIP."""
    tmp = tmp_path_factory.mktemp("captions")
    shutil.copytree(report_root["root"].path, tmp / "root")
    root = DataRoot(tmp / "root")
    clip = save_clip(tmp / "clip")
    config = {"annotators": {"caption_scorer": {"model": str(clip), "batch_size": 3}}}
    with Catalog(root) as catalog:
        catalog.upsert("rounds", [{"round": 1, "status": "done", "config": json.dumps(config), "started_at": utc_now()}])
    return {"root": root, "clip": clip}


def _sample(root: DataRoot, limit: int):
    """The images and captions the report samples, read independently: (ids, [(image_id, text)], PIL by id)."""
    with Catalog(root) as catalog:
        rows = catalog.query(CAPTIONS_SQL)
        ids = sorted({r[0] for r in rows})[:limit]
        pictures = {loc.image_id: decode_rgb(data) for loc, data in read_images(image_locations(catalog, ids))}
    return ids, [(i, text) for i, _, text in rows if i in ids], pictures


def test_metrics_of_a_hand_made_matrix():
    sims = np.array([[0.9, 0.1, 0.2, 0.3],     # owns captions 0, 1: best is 0 -> hit
                     [0.5, 0.4, 0.1, 0.45],    # owns caption 2: best is 0 -> miss
                     [0.2, 0.2, 0.1, 0.2],     # owns caption 3: a tie of 0, 1 and 3 goes to 0 -> miss
                     [1.0, 1.0, 1.0, 1.0]])    # owns no caption: left out
    out = retrieval_metrics(sims, np.array([0, 0, 1, 2]))
    assert out == pytest.approx({"images": 3, "captions": 4, "r_at_1": 1 / 3, "chance_r_at_1": (2 / 4 + 1 / 4 + 1 / 4) / 3,
                                 "mean_similarity": (0.9 + 0.1 + 0.1 + 0.2) / 4})
    assert retrieval_metrics(np.zeros((2, 0)), np.zeros(0, int))["r_at_1"] is None


def test_settings_come_from_the_scorer_else_the_matcher():
    own = {"annotators": {"caption_scorer": {"model": "a", "batch_size": 4}, "region_text_matcher": {"model": "b"}}}
    assert scorer_settings(own) == {"model": "a", "batch_size": 4}
    matcher = {"annotators": {"region_text_matcher": {"model": "b", "device": "cpu", "margin": 0.2}}}
    assert scorer_settings(matcher) == {"model": "b", "device": "cpu"}
    assert scorer_settings({"annotators": {"ocr": {}}}) is None and scorer_settings(None) is None


def test_controlled_embeddings_give_the_known_r_at_1(clip_root, monkeypatch):
    """Image k embeds as e_k; its caption as e_k + 0.1 e_(k+1), except the first image's, which
    points at the second image (2 e_1 + 0.1 e_0): exactly the first two images miss."""
    root = clip_root["root"]
    ids, caps, pictures = _sample(root, 6)
    assert len(ids) == 6 and len(caps) == 6  # one curated brief caption per image in this root
    n = len(ids)
    eye = np.eye(n)
    by_pixels = {hashlib.sha256(pictures[i].tobytes()).hexdigest(): k for k, i in enumerate(ids)}
    text_of = {text: eye[k] + 0.1 * eye[(k + 1) % n] for k, (_, text) in enumerate(caps)}
    text_of[caps[0][1]] = 2 * eye[1] + 0.1 * eye[0]

    class Controlled:
        batch_size, model_dir, version = 4, clip_root["clip"], "controlled"

        def load(self):
            pass

        def embed_images(self, images):
            return np.stack([eye[by_pixels[hashlib.sha256(im.tobytes()).hexdigest()]] for im in images])

        def embed_texts(self, texts):
            vectors = np.stack([text_of[t] for t in texts])
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(captions_module, "build_annotator", lambda name, **settings: Controlled())
    out = caption_retrieval(root, 1, max_images=6)
    own = np.array([(1 + text_of[t][k] / np.linalg.norm(text_of[t])) / 2 for k, (_, t) in enumerate(caps)])
    assert out["available"] and out["version"] == "controlled"
    assert out["overall"] == pytest.approx({"images": 6, "captions": 6, "r_at_1": 4 / 6, "chance_r_at_1": 1 / 6,
                                            "mean_similarity": float(own.mean())})
    assert list(out["by_granularity"]) == ["brief"] and out["by_granularity"]["brief"] == out["overall"]


def test_tiny_clip_matches_a_brute_force_forward_pass(clip_root):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    root = clip_root["root"]
    out = caption_retrieval(root, 1, max_images=5)  # the model named in round 1's config
    ids, caps, pictures = _sample(root, 5)
    model, processor = CLIPModel.from_pretrained(clip_root["clip"]).eval(), CLIPProcessor.from_pretrained(clip_root["clip"])
    inputs = processor(text=[t for _, t in caps], images=[pictures[i] for i in ids], return_tensors="pt", padding=True,
                       truncation=True, max_length=32)
    with torch.inference_mode():
        cosine = (model(**inputs).logits_per_image / model.logit_scale.exp()).numpy()
    owner = np.array([ids.index(i) for i, _ in caps])
    hits = [owner[int(np.argmax(cosine[k]))] == k for k in range(len(ids))]
    assert out["available"] and out["model"] == str(clip_root["clip"].resolve())
    assert out["overall"]["images"] == 5 and out["overall"]["captions"] == len(caps)
    assert out["overall"]["r_at_1"] == pytest.approx(np.mean(hits))
    assert out["overall"]["mean_similarity"] == pytest.approx(np.mean((1 + cosine[owner, np.arange(len(caps))]) / 2),
                                                              abs=1e-5)
    headers, grid = retrieval_grid(out)
    assert headers[3] == "R@1" and grid[0][:3] == ["all", "5", str(len(caps))]


def test_without_a_model_the_figures_are_not_made_up(report_root, clip_root, tmp_path):
    out = caption_retrieval(report_root["root"], 1)  # its rounds config names no model
    assert not out["available"] and "no CLIP-style model" in out["note"] and out["overall"]["r_at_1"] is None
    out = caption_retrieval(clip_root["root"], 1, settings={"model": str(tmp_path / "missing")})
    assert not out["available"] and "could not be built" in out["note"]
    with pytest.raises(ValueError, match="max_images"):
        caption_retrieval(clip_root["root"], 1, max_images=0)


def test_dashboard_shows_the_round_figures(clip_root, report_root, tmp_path):
    page = build_dashboard(clip_root["root"], 1, tmp_path / "d.html", DashboardConfig(gallery_images=1, caption_images=4))
    text = page.read_text(encoding="utf-8")
    data = json.loads(text.split('id="dashboard-data">')[1].split("</script>")[0])
    assert data["captions"]["available"] and data["captions"]["overall"]["images"] == 4
    assert '<section id="captions">' in text and 'class="retrieval"' in text and "<th>R@1</th>" in text
    plain = build_dashboard(report_root["root"], 1, tmp_path / "p.html", DashboardConfig(gallery_images=1))
    assert "no CLIP-style model" in plain.read_text(encoding="utf-8")
    off = json.loads(build_dashboard(clip_root["root"], 1, tmp_path / "o.html", DashboardConfig(
        gallery_images=1, caption_images=0)).read_text().split('id="dashboard-data">')[1].split("</script>")[0])
    assert off["captions"]["available"] is False
