#!/usr/bin/env bash
# Rebuilds the demo's Florence-2 from scratch, in four stages:
#   1. <OD> on the pre-training pool from a fresh s128 (3,000 steps; about 65 minutes on one CPU thread):
#      the shipped checkpoint, written to engine/demo/checkpoint
#   2. every task (captions of three granularities, OD, a description per box, OCR, grounding of every
#      caption, a mask per box) continued from stage 1 (6,000 steps; about 1.5 hours on one shared thread),
#      then 3. and 4. twice 3,000 more steps at lr 3e-4 (about 40 minutes each): the multi-task attempt, written to
#      experiments/multitask-demo-model (not shipped: see its README)
# Each stage resumes where it stopped when run again (its --work folder keeps the trainer's checkpoints).
#   WORK     scratch folder (default /tmp/fld-demo-pretrain)
#   DEVICE   cpu or cuda (default cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${WORK:-/tmp/fld-demo-pretrain}"
DEVICE="${DEVICE:-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
nice -n 10 .venv/bin/python -m engine.demo.pretrain --out engine/demo/checkpoint --work "$WORK/od" --device "$DEVICE" \
    --tasks OD --steps 3000
TASKS=CAPTION,DETAILED_CAPTION,MORE_DETAILED_CAPTION,OD,REGION_TO_DESCRIPTION,OCR_WITH_REGION,CAPTION_TO_PHRASE_GROUNDING,REGION_TO_SEGMENTATION
nice -n 10 .venv/bin/python -m engine.demo.pretrain --out "$WORK/stage2" --work "$WORK/all" \
    --device "$DEVICE" --start engine/demo/checkpoint --od-repeat 2 --steps 6000 --lr 0.0005 --warmup-steps 100 \
    --tasks "$TASKS"
nice -n 10 .venv/bin/python -m engine.demo.pretrain --out "$WORK/stage3" --work "$WORK/all3" \
    --device "$DEVICE" --start "$WORK/stage2" --od-repeat 2 --steps 3000 --lr 0.0003 --warmup-steps 100 \
    --tasks "$TASKS"
nice -n 10 .venv/bin/python -m engine.demo.pretrain --out experiments/multitask-demo-model --work "$WORK/all4" \
    --device "$DEVICE" --start "$WORK/stage3" --od-repeat 2 --steps 3000 --lr 0.0003 --warmup-steps 100 \
    --tasks "$TASKS"
