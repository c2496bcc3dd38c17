"""Serving services: model loading, preprocessing, micro-batched inference, uploads, metrics, reload."""
