"""Reading the ingested and curated dataset back, one way for retrain, report, release, review
and the commands: image locations and bytes, curated rows, the split, COCO evaluation."""
