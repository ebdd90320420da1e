"""Text encoders behind one Encoder protocol: sentence-transformers (torch), the local int8 copies (ONNX Runtime, OpenVINO) and the model-free hashing encoder for tests."""
