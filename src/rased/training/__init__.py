"""Training of Rased's models on public data, exported to ONNX (`python -m rased.training`)."""
