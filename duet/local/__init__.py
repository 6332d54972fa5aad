"""The embedded local stack: a real Triton (or the ONNX Runtime fallback) plus the transformers on 127.0.0.1."""
