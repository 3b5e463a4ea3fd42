"""Memory and FLOPs of models: measured, predicted from shapes, and held against a budget."""
