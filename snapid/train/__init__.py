"""Training: augmentation, the probe feature cache, loop functions, phases and checkpoints."""
