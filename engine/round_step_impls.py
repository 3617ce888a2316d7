"""The built-in round steps: ingest, annotate, curate (training, evaluation, promotion and the
dashboard register themselves from their own modules via ``engine.round_steps.round_step``).
"""

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
    model from ``model.annotate_from_round`` on."""
    from engine.model_registry import current_model

    annotators = {name: dict(settings) for name, settings in ctx.config.annotators.items()}
    if ctx.round >= ctx.config.model.annotate_from_round:
        checkpoint = current_model(ctx.root, ctx.round, ctx.config)
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
