"""Memory and FLOPs of non-local placements before training: measured, predicted, swept (`run.py profile`)."""
