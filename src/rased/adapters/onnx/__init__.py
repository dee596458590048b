"""Models run in-process with onnxruntime (the degraded path when Triton is away)."""
