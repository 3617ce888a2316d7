"""Fine-tune variants on a finished demo root's curated round; the unseen-scene AP50 of each.

Evaluation tooling (reads ground truth through ``model_quality`` only; never a decision):

    .venv/bin/python experiments/finetune_variants.py ROOT ROUND NAME [training_key=json_value ...]

trains the round-``ROUND`` candidate again from the model that round started from, on the round's
own curated set, with ``[training]`` overridden (e.g. ``max_steps=60 lr=5e-5``), into
``/tmp/fld-finetune-variants/ROOT-rROUND-NAME`` (the root is not written), and prints one JSON line:
the start model's and the variant's shape AP50 on the demo's 200 unseen scenes of the root's style.
The variant ``base`` (no override) reproduces the demo's own candidate.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from engine.config import EngineConfig
from engine.demo.model_quality import model_quality, sample_style
from engine.retrain import train as training
from engine.retrain.examples import build_examples
from storage.layout import DataRoot


def main(argv: list[str]) -> None:
    root, round_, name = DataRoot(Path(argv[0])), int(argv[1]), argv[2]
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in argv[3:])}
    config = EngineConfig.load(root.path / "demo.toml")
    train_config = replace(config.training, **overrides)
    out = Path("/tmp/fld-finetune-variants") / f"{root.path.name}-r{round_}-{name}"
    model_of = DataRoot.model
    # the variant's checkpoint goes to ``out``; every other round's model stays where the root has it
    object.__setattr__(root, "model", lambda r: out if r == round_ else model_of(root, r))
    examples, _ = build_examples(root, round_, train_config.eval_fraction, train_config.seed, train_config.tasks,
                                 target_format=train_config.target_format)
    began = time.time()
    training.train(root, round_, examples, train_config)
    start = training.current_model(root, round_) or Path(train_config.base_model)
    settings, style = config.current_model_settings(), sample_style(root.path / "sample")
    print(json.dumps({"root": str(root.path), "round": round_, "variant": name, "overrides": overrides,
                      "start_ap50": round(model_quality(start, settings, style)["shape_ap50"], 4),
                      "ap50": round(model_quality(out, settings, style)["shape_ap50"], 4),
                      "seconds": round(time.time() - began, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
