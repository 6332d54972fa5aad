"""The Python-backend model that serves an ONNX file with ONNX Runtime inside the local Triton."""
