"""Triton Inference Server over gRPC (KServe v2), through tritonclient."""
