"""The web service: `create_app(settings, bundle=)` serves a model bundle (ONNX Runtime, no torch)."""
