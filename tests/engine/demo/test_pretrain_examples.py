"""The pre-training pool's examples: every pre-trained task, each target parsed back by the real
Florence-2 processor to the scene's own texts and geometry."""

from __future__ import annotations

import collections
import json

import pytest

from engine.demo.pretrain import PretrainConfig
from engine.demo.pretrain_examples import PRETRAIN_TASKS, pool_examples
from engine.demo.sample_data import SampleConfig, write_sample
from florence2 import format as ff


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    out = tmp_path_factory.mktemp("pool") / "pool"
    write_sample(out, SampleConfig(images=6, seed=10_000, images_per_shard=4, noise=True))
    return out


@pytest.fixture(scope="module")
def processor():
    from transformers import Florence2Processor

    from engine.demo.report import DEMO_CHECKPOINT

    return Florence2Processor.from_pretrained(DEMO_CHECKPOINT, local_files_only=True)


def _parsed(processor, example):
    token = ff.task_spec(example.task).token
    text = processor.tokenizer.decode(processor.tokenizer(example.target).input_ids, skip_special_tokens=False)
    return processor.post_process_generation(text, task=token, image_size=(example.width, example.height))[token]


def test_every_task_of_every_image_from_its_scene(pool, processor):
    truth = json.loads((pool / "ground_truth.json").read_text())
    examples = pool_examples(pool, images_per_shard=4, target_format="per_box")
    tasks = collections.defaultdict(set)
    for e in examples:
        tasks[e.image_id].add(e.task)
    assert len(tasks) == len(truth["images"])
    assert set.union(*tasks.values()) == set(PRETRAIN_TASKS)
    for image in truth["images"]:
        mine = [e for e in examples if e.image_id == f"pool-{image['id']}"]
        anns = [a for a in truth["annotations"] if a["image_id"] == image["id"]]
        for e in mine:
            assert e.shard.endswith(f"shard-{(image['id'] - 1) // 4:05d}.tar") and e.key == image["file_name"].split(".")[0]
        captions = {e.task: e.target for e in mine if e.task.endswith("CAPTION") and "<" not in e.target}
        assert captions["CAPTION"] == image["captions"]["brief"]
        assert captions["MORE_DETAILED_CAPTION"] == image["captions"]["more_detailed"]
        described = sorted(_parsed(processor, e) for e in mine if e.task == "REGION_TO_DESCRIPTION")
        assert described == sorted(a["description"] for a in anns)
        grounded = [e for e in mine if e.task == "CAPTION_TO_PHRASE_GROUNDING"]
        assert len(grounded) == 3  # one per caption granularity
        for e in grounded:
            caption = e.prompt.removeprefix("<CAPTION_TO_PHRASE_GROUNDING>")
            assert caption in image["captions"].values()
            assert all(phrase in caption for phrase in _parsed(processor, e)["labels"])
        shapes = [a for a in anns if "text" not in a]
        assert sum(e.task == "REGION_TO_SEGMENTATION" for e in mine) == len(shapes)


def test_config_refuses_unknown_tasks_and_a_missing_start(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        PretrainConfig(tasks=("OD", "SING"))
    with pytest.raises(ValueError, match="start must be a checkpoint"):
        PretrainConfig(start=str(tmp_path))
    assert PretrainConfig(tasks=("<OD>",)).tasks == ("OD",)
