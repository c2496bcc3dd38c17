"""snapid: from a folder of labelled photos to an image-identification web service."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The library's entry points, imported on first use: `import snapid` stays light (no NumPy, ONNX Runtime
# or torch) and only the path a name needs is loaded. Add a name here as "name": "module".
_LAZY = {
    "import_dataset": "snapid.api",
    "fit": "snapid.api",
    "Dataset": "snapid.api",
    "Run": "snapid.api",
    "load": "snapid.inference",
    "Model": "snapid.inference",
    "Answer": "snapid.inference",
}

if TYPE_CHECKING:
    from snapid.api import Dataset, Run, fit, import_dataset
    from snapid.inference import Answer, Model, load


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'snapid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


# Spelled out rather than built from _LAZY, so that linters and type checkers see the names imported under
# TYPE_CHECKING as the public API: keep it in step with _LAZY.
__all__ = ["__version__", "import_dataset", "fit", "Dataset", "Run", "load", "Model", "Answer"]
