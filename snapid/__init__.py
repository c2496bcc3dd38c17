"""snapid: from a folder of labelled photos to an image-identification web service."""

__version__ = "0.1.0"
