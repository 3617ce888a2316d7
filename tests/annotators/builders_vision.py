"""Test-size builders of the vision specialists: detector, segmenter, ocr, coco_labels.

Each ``tiny_*`` function saves a randomly initialised, test-size transformers checkpoint
(model + image processor, built locally from its config: nothing is downloaded) into a
folder; each ``@tiny_builder`` returns the annotator built from it through the production
path ``build_annotator(name, model=DIR)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from annotators.base import Annotator
from annotators.registry import build_annotator
from tests.annotators.builders import tiny_builder

LABELS = {0: "cat", 1: "dog", 2: "stop sign"}


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def tiny_detr_dir(folder: Path) -> Path:
    """A ~8k-parameter DETR (tiny HF ResNet backbone, no timm, no pretrained backbone) + processor."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    _seed()
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                            out_features=["stage4"])
    config = DetrConfig(
        use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False,
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=16, decoder_ffn_dim=16,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10,
        id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )
    folder.mkdir(parents=True, exist_ok=True)
    DetrForObjectDetection(config).save_pretrained(folder)
    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(folder)
    return folder


def tiny_rtdetr_dir(folder: Path) -> Path:
    """A ~60k-parameter RT-DETR (tiny RT-DETR ResNet backbone, 1 decoder layer) + processor."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    _seed()
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                  out_features=["stage2", "stage3", "stage4"], layer_type="basic")
    config = RTDetrConfig(
        backbone_config=backbone, encoder_in_channels=[8, 16, 16], encoder_hidden_dim=16,
        encoder_ffn_dim=16, encoder_attention_heads=2, d_model=16, decoder_in_channels=[16, 16, 16],
        decoder_ffn_dim=16, decoder_layers=1, decoder_attention_heads=2, num_queries=10, num_denoising=0,
        id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )
    folder.mkdir(parents=True, exist_ok=True)
    RTDetrForObjectDetection(config).save_pretrained(folder)
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def tiny_sam_dir(folder: Path) -> Path:
    """A ~16k-parameter SAM at 64x64 input (8x8 patch grid) + a SamProcessor of that size."""
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    _seed()
    vision = SamVisionConfig(hidden_size=16, output_channels=16, num_hidden_layers=1, num_attention_heads=1,
                             image_size=64, patch_size=8, window_size=4, global_attn_indexes=[0], mlp_dim=16,
                             num_pos_feats=8)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=16, mlp_dim=16, num_hidden_layers=1, num_attention_heads=1,
                                   iou_head_hidden_dim=16, iou_head_depth=1)
    folder.mkdir(parents=True, exist_ok=True)
    SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)) \
        .save_pretrained(folder)
    image_processor = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=image_processor).save_pretrained(folder)
    return folder


def write_coco_json(path: Path, file_names: list[str], width: int = 64, height: int = 48) -> Path:
    """A small COCO JSON: one ``width x height`` image per file name, each with three annotations:

    a box-only "cat" ``[4, 6, 20, 10]`` (xywh), a "dog" with a triangle polygon
    ``[30, 8, 60, 8, 45, 40]`` and a "stop sign" with an RLE mask of rows 20..29, columns 2..21.
    COCO image ids are 100, 101, ...
    """
    from pycocotools import mask as mask_utils

    square = np.zeros((height, width), dtype=np.uint8)
    square[20:30, 2:22] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    images, annotations = [], []
    for index, name in enumerate(file_names):
        image_id = 100 + index
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        base = len(annotations)
        annotations += [
            {"id": base + 1, "image_id": image_id, "category_id": 1, "bbox": [4, 6, 20, 10], "area": 200,
             "iscrowd": 0},
            {"id": base + 2, "image_id": image_id, "category_id": 2, "bbox": [30, 8, 30, 32], "area": 480,
             "iscrowd": 0, "segmentation": [[30, 8, 60, 8, 45, 40]]},
            {"id": base + 3, "image_id": image_id, "category_id": 3, "bbox": [2, 20, 20, 10], "area": 200,
             "iscrowd": 1, "segmentation": rle},
        ]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "stop sign"}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@tiny_builder("detector")
def build_detector(tmp_path: Path) -> Annotator:
    """RT-DETR at test size; threshold 0 so random weights still give rows."""
    return build_annotator("detector", model=str(tiny_rtdetr_dir(tmp_path / "rtdetr")), threshold=0.0,
                           batch_size=2)


@tiny_builder("segmenter")
def build_segmenter(tmp_path: Path) -> Annotator:
    """SAM at test size; it only emits rows for images whose context holds region/phrase boxes."""
    return build_annotator("segmenter", model=str(tiny_sam_dir(tmp_path / "sam")), batch_size=2)


@tiny_builder("ocr")
def build_ocr(tmp_path: Path) -> Annotator:
    """RapidOCR with its shipped weights (no checkpoint to save); one ONNX thread."""
    return build_annotator("ocr", num_threads=1)


@tiny_builder("coco_labels")
def build_coco_labels(tmp_path: Path) -> Annotator:
    """COCO labels for images whose ``file_name`` is ``img0.png`` .. ``img15.png`` (what the contract
    test calls its images); any image size works, coordinates are scaled from 64x48."""
    path = write_coco_json(tmp_path / "labels.json", [f"img{i}.png" for i in range(16)])
    return build_annotator("coco_labels", path=str(path))
