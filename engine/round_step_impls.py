"""The built-in round steps: ingest, annotate, curate, train, evaluate, promote (the dashboard
step lives in ``engine.dashboard``)."""

from __future__ import annotations

from typing import Any

from engine.annotate import AnnotateRequest, annotate
from engine.annotation_stages import annotation_stages
from engine.curate import curate_round
from engine.ingest import IngestConfig, ingest
from engine.round_steps import RoundContext, round_step
from storage.catalog import Catalog
from storage.decode import DecodeLimits

#: every step of a round, in order
ROUND_STEPS = ("ingest", "annotate", "curate", "train", "evaluate", "promote", "dashboard")

TRAIN_SUMMARY_KEYS = ("start_model", "step", "resumed_from", "steps_run", "samples", "samples_per_second",
                      "finished", "already_trained")


@round_step("ingest")
def ingest_step(ctx: RoundContext) -> dict[str, Any]:
    """Ingest the configured sources (already-ingested shards are skipped)."""
    paths = list(ctx.config.sources.paths)
    if not paths:
        return {"sources": 0}
    section = ctx.config.ingest
    summary = ingest(ctx.root, paths, IngestConfig(max_pixels=section.max_pixels, min_side=section.min_side,
                                                    workers=section.workers, progress=ctx.progress))
    return summary.as_dict()


def round_annotators(ctx: RoundContext) -> dict[str, dict[str, Any]]:
    """The annotators of this round: the configured specialists, plus the current Florence-2
    model (last promoted, else the base model) from ``model.annotate_from_round`` on."""
    from engine.train import resolve_start_model

    annotators = {name: dict(settings) for name, settings in ctx.config.annotators.items()}
    if ctx.round >= ctx.config.model.annotate_from_round:
        checkpoint = resolve_start_model(ctx.root, ctx.round, ctx.config.training)
        annotators["florence2"] = {**annotators.get("florence2", {}), **ctx.config.model.annotator,
                                   "model": str(checkpoint)}
    return annotators


@round_step("annotate")
def annotate_step(ctx: RoundContext) -> dict[str, Any]:
    """Run the round's annotators, stage by stage (readers after the writers they read)."""
    annotators = round_annotators(ctx)
    runner = ctx.config.runner
    limits = DecodeLimits(ctx.config.ingest.max_pixels, ctx.config.ingest.min_side)
    sources: dict[str, Any] = {}
    for stage in annotation_stages(list(annotators)):
        request = AnnotateRequest(round=ctx.round, annotators={n: annotators[n] for n in stage},
                                  runner=runner.name, workers=runner.workers, pipeline_args=list(runner.options),
                                  limits=limits, progress=ctx.progress, wave_size=runner.wave_size)
        sources.update(annotate(ctx.root, request)["sources"])
    return {"sources": sources}


@round_step("curate")
def curate_step(ctx: RoundContext) -> dict[str, Any]:
    """Curate the round (merging the previous round's curated set)."""
    summary = curate_round(ctx.root, ctx.round, ctx.config.curation)
    with Catalog(ctx.root) as catalog:
        catalog.refresh_views()
    return summary


@round_step("train")
def train_step(ctx: RoundContext) -> dict[str, Any]:
    """Build the training set from the curated round and fine-tune the current model on it."""
    from engine.promote import train_round

    def log(step: int, loss: float, lr: float) -> None:
        if ctx.progress and (step == 1 or step % 50 == 0):
            print(f"[round {ctx.round}] train step {step}: loss {loss:.4f}, lr {lr:.3g}")

    out = train_round(ctx.root, ctx.round, ctx.config.training, log=log)
    train = out["train"]
    losses = train.get("losses") or []
    return {"examples": out["examples"]["examples"], "by_split_task": out["examples"]["by_split_task"],
            **{k: train[k] for k in TRAIN_SUMMARY_KEYS if k in train},
            "train_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None}


@round_step("evaluate")
def evaluate_step(ctx: RoundContext) -> dict[str, Any]:
    """Metrics of the new model and of the model it started from, on the validation split."""
    from engine.promote import evaluate_round

    result = evaluate_round(ctx.root, ctx.round, ctx.config.training)
    return {**result["new"], "current": result["current"]}


@round_step("promote")
def promote_step(ctx: RoundContext) -> dict[str, Any]:
    """Make the new model current when it beats the current one (or always, by config)."""
    from engine.promote import promote_round

    payload = promote_round(ctx.root, ctx.round, ctx.config.training)
    return {"promoted": payload["promoted"], "reason": payload["reason"], "metric": payload["metric"]}
