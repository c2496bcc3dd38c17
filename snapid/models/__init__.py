"""Backbones (one registry), heads and pretrained weights. Imports torch: not for the serving path."""

from snapid.models.classifier import Classifier
from snapid.models.factory import create, from_config
from snapid.models.registry import DEFAULT_MODEL, BackboneSpec, get_spec, list_specs, register

__all__ = ["DEFAULT_MODEL", "BackboneSpec", "Classifier", "create", "from_config", "get_spec", "list_specs", "register"]
