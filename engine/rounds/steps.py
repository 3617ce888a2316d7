"""The steps of one annotate-refine round, in order: ingest, annotate, curate, review, train,
evaluate, promote, dashboard.

Each step is a plain function of a :class:`~engine.rounds.context.RoundContext` that returns
a JSON-able summary; :data:`ROUND_STEPS` holds them in the order a round runs them
(``engine.rounds.loop``), and ``engine.rounds.state`` records which are done.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from engine.annotate.plan import AnnotateRequest, annotate
from engine.annotate.stages import annotation_stages
from engine.curate.round_curation import curate_configured
from engine.ingest.shards import IngestConfig, ingest
from engine.report.dashboard import build_dashboard
from engine.rounds.context import RoundContext
from storage.catalog import publish_views
from storage.decode import DecodeLimits

TRAIN_SUMMARY_KEYS = ("start_model", "step", "resumed_from", "steps_run", "samples", "samples_per_second",
                      "finished", "already_trained")


def ingest_step(ctx: RoundContext) -> dict[str, Any]:
    """Ingest the configured sources (already-ingested shards are skipped)."""
    paths = list(ctx.config.sources.paths)
    if not paths:
        return {"sources": 0}
    section = ctx.config.ingest
    summary = ingest(ctx.root, paths, IngestConfig(max_pixels=section.max_pixels, min_side=section.min_side,
                                                    workers=section.workers, progress=ctx.progress,
                                                    max_member_bytes=section.max_member_bytes,
                                                    max_sidecar_bytes=section.max_sidecar_bytes))
    return summary.as_dict()


def round_annotators(ctx: RoundContext) -> dict[str, dict[str, Any]]:
    """The annotators of this round: the configured specialists, plus the current Florence-2
    model (last promoted, else the base model) from ``model.annotate_from_round`` on."""
    from engine.retrain.train import resolve_start_model

    annotators = {name: dict(settings) for name, settings in ctx.config.annotators.items()}
    if ctx.round >= ctx.config.model.annotate_from_round:
        checkpoint = resolve_start_model(ctx.root, ctx.round, ctx.config.training)
        annotators["florence2"] = {**ctx.config.current_model_table(), "model": str(checkpoint)}
    return annotators


def annotate_step(ctx: RoundContext) -> dict[str, Any]:
    """Run the round's annotators, stage by stage (readers after the writers they read)."""
    annotators = round_annotators(ctx)
    runner = ctx.config.runner
    limits = DecodeLimits(ctx.config.ingest.max_pixels, ctx.config.ingest.min_side)
    sources: dict[str, Any] = {}
    for stage in annotation_stages(list(annotators)):
        request = AnnotateRequest(round=ctx.round, annotators={n: annotators[n] for n in stage},
                                  runner=runner.name, workers=runner.workers, pipeline_args=list(runner.options),
                                  limits=limits, progress=ctx.progress, wave_size=runner.wave_size,
                                  wave_images=runner.wave_images, decode_threads=runner.decode_threads)
        sources.update(annotate(ctx.root, request)["sources"])
    return {"sources": sources}


def curate_step(ctx: RoundContext) -> dict[str, Any]:
    """Curate the round (merging the previous round's curated set), in partitions when
    ``[curation] partition_rows`` asks for them."""
    runner = ctx.config.runner  # partitions on a Beam runner (``[curation] partition_runner``) take its workers and flags
    summary = curate_configured(ctx.root, ctx.round, ctx.config.curation, runner.workers, runner.options)
    publish_views(ctx.root)  # curation added Parquet files only: the published catalog's views list them
    return summary


def review_step(ctx: RoundContext) -> dict[str, Any]:
    """Queue the images that most need a human look and write them as Label Studio tasks
    (``[review]``); it waits for nobody: corrections imported later apply to the next round."""
    from engine.dataset.locations import ImageBytesError
    from engine.review.export import export_label_studio
    from engine.review.plan import plan_review, round_thresholds

    config = ctx.config.review
    if config.budget_fraction == 0:
        return {"queue": 0, "note": "review.budget_fraction = 0: no queue"}
    thresholds = round_thresholds(ctx.root, ctx.round, ctx.config.curation.confidence)
    queue = plan_review(ctx.root, ctx.round, None, thresholds, config)
    out = ctx.root.review_queue(ctx.round).parent / "label-studio"
    if not (config.export and queue.num_rows):
        return {"queue": queue.num_rows, "export": None}
    try:
        export_label_studio(ctx.root, ctx.round, out)
    except (ImageBytesError, OSError) as exc:  # the queue stands; the tasks can be exported again by hand
        return {"queue": queue.num_rows, "export": None, "export_error": f"{exc} (fld review export writes them again)"}
    return {"queue": queue.num_rows, "export": str(out)}


def train_step(ctx: RoundContext) -> dict[str, Any]:
    """Build the training set from the curated round and fine-tune the current model on it."""
    from engine.retrain.round import train_round
    from engine.retrain.step_log import StepLog

    log = StepLog(lambda step, loss, lr: f"[round {ctx.round}] train step {step}: loss {loss:.4f}, lr {lr:.3g}",
                  print, every=50) if ctx.progress else None
    out = train_round(ctx.root, ctx.round, ctx.config.training, log=log)
    train = out["train"]
    losses = train.get("losses") or []
    return {"examples": out["examples"]["examples"], "by_split_task": out["examples"]["by_split_task"],
            **{k: train[k] for k in TRAIN_SUMMARY_KEYS if k in train},
            "train_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None}


def evaluate_step(ctx: RoundContext) -> dict[str, Any]:
    """Metrics of the new model and of the model it started from, on the validation split."""
    from engine.retrain.round import evaluate_round

    result = evaluate_round(ctx.root, ctx.round, ctx.config.training, ctx.config.current_model_settings())
    return {**result["new"], "current": result["current"]}


def promote_step(ctx: RoundContext) -> dict[str, Any]:
    """Make the new model current when it beats the current one (or always, by config)."""
    from engine.retrain.round import promote_round

    payload = promote_round(ctx.root, ctx.round, ctx.config.training)
    return {"promoted": payload["promoted"], "reason": payload["reason"], "metric": payload["metric"],
            "p_better": payload["p_better"]}


def dashboard_step(ctx: RoundContext) -> dict[str, Any]:
    """The round's dashboard at ``ROOT/reports/round=R/dashboard.html``."""
    return {"path": str(build_dashboard(ctx.root, ctx.round))}


class RoundStep(NamedTuple):
    """A step's name (as recorded in the catalog) and its function."""

    name: str
    run: Callable[[RoundContext], dict[str, Any]]


#: every step of a round, in the order a round runs them
ROUND_STEPS: tuple[RoundStep, ...] = (
    RoundStep("ingest", ingest_step),
    RoundStep("annotate", annotate_step),
    RoundStep("curate", curate_step),
    RoundStep("review", review_step),
    RoundStep("train", train_step),
    RoundStep("evaluate", evaluate_step),
    RoundStep("promote", promote_step),
    RoundStep("dashboard", dashboard_step),
)


def step_names() -> tuple[str, ...]:
    """The names of :data:`ROUND_STEPS`, in order."""
    return tuple(step.name for step in ROUND_STEPS)


def step_function(name: str) -> Callable[[RoundContext], dict[str, Any]]:
    """The function of step ``name``; an unknown name raises with the known ones."""
    for step in ROUND_STEPS:
        if step.name == name:
            return step.run
    raise ValueError(f"unknown round step {name!r}; known: {', '.join(step_names())}")
