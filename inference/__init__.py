"""Running trained models on videos: exported files (ONNX) as models, and what they need to know."""
