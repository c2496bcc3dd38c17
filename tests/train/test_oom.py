"""Out-of-memory back-off everywhere a batch runs (the pill project lost runs to it): probe feature extraction,
evaluation and detector training halve the batch on a (simulated) CUDA out-of-memory error and go on from the
same sample, with the same result as a run that never ran out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from snapid.train.oom import in_batches


class Tight(nn.Module):
    """Wraps a module; a batch larger than ``limit`` raises CUDA's out-of-memory error, as a full GPU would."""

    def __init__(self, inner: nn.Module, limit: int):
        super().__init__()
        self.inner, self.limit, self.refused = inner, limit, 0

    def forward(self, x, *rest):
        if len(x) > self.limit:
            self.refused += 1
            raise torch.cuda.OutOfMemoryError(f"simulated: {len(x)} images do not fit")
        return self.inner(x, *rest)


def test_in_batches_halves_and_resumes_at_the_same_item():
    seen, notes = [], []

    def step(start, stop):
        if stop - start > 3:
            raise torch.cuda.OutOfMemoryError("simulated")
        seen.extend(range(start, stop))

    assert in_batches(10, 8, step, note=notes.append, what="work") == 2
    assert seen == list(range(10)) and len(notes) == 2 and "continuing at item 0" in notes[0]


def test_a_batch_of_one_that_does_not_fit_is_an_error():
    def step(start, stop):
        raise torch.cuda.OutOfMemoryError("simulated")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        in_batches(3, 2, step)


def test_feature_extraction_backs_off_with_the_same_features(shapes, home, engine):
    from snapid.data.cache import PrepareParams, prepare
    from snapid.models import factory
    from snapid.track import datasets as dataset_store
    from snapid.track.db import transaction
    from snapid.train.augment import Normalize
    from snapid.train.features import extract, frozen_backbone
    from snapid.train.setup import load_splits

    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=shapes)
    params = PrepareParams(size=32)
    prepare(manifest, home, params)
    train_set, _, _ = load_splits(home, manifest, params)
    model = factory.create("custom_cnn", 3, pretrained=False).eval()
    backbone = frozen_backbone(model)
    kw = dict(transform=Normalize((0.5,) * 3, (0.5,) * 3), device=torch.device("cpu"), batch_size=16, seed=0)
    whole, labels = extract(backbone, train_set, **kw)
    tight, notes = Tight(backbone, limit=5), []
    tight.feature_dim = backbone.feature_dim
    backed_off, labels2 = extract(tight, train_set, note=notes.append, **kw)
    assert tight.refused >= 1 and notes and "batch size halved to 4" in notes[-1]
    assert torch.equal(labels, labels2) and torch.allclose(whole.float(), backed_off.float(), atol=1e-2)


def test_evaluation_backs_off_with_the_same_logits(make_run, home, engine):
    from snapid.evaluate.loaded import load_trained, predict_logits, split_dataset

    make_run("ev")
    trained = load_trained("ev", engine=engine)
    test = split_dataset(trained, "test", workspace=home, engine=engine)
    whole, labels = predict_logits(trained.model, test, trained.preprocess, batch_size=16)
    assert len(test) >= 2
    trained.model.head = Tight(trained.model.head, limit=1)
    backed_off, labels2 = predict_logits(trained.model, test, trained.preprocess, batch_size=16)
    assert trained.model.head.refused >= 1
    assert np.array_equal(labels, labels2) and np.allclose(whole, backed_off, atol=1e-4)
