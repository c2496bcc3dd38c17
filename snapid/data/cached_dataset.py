"""Read a prepared cache as a torch Dataset: memory-mapped uint8 shards, whole batches at a time.

Items come back as uint8 tensors (3 x S x S); normalisation and augmentation happen later, on
the training device, in one go per batch (see `normalize`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from snapid import geometry
from snapid.data.cache import SPLIT_CODES
from snapid.errors import NotFound


class CachedDataset(Dataset):
    def __init__(self, index_file: Path, split: str | None = "train"):
        index_file = Path(index_file)
        if not index_file.exists():
            raise NotFound(f"{index_file}: no prepared cache; run `snapid data prepare` first")
        meta = json.loads(index_file.read_text())
        table = np.load(index_file.with_suffix(".npz"))
        keep = np.ones(len(table["row"]), dtype=bool) if split is None else table["split"] == SPLIT_CODES[split]
        self.classes: list[dict] = meta["classes"]
        self.params: dict = meta["params"]
        self.shard_of = table["shard"][keep]
        self.row_of = table["row"][keep]
        self.labels = table["label"][keep].astype(np.int64)
        folder = index_file.parent.parent
        self._shards = [np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["shards"]]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = np.array(self._shards[self.shard_of[i]][self.row_of[i]])  # a copy: memmaps are read-only
        return torch.from_numpy(pixels).permute(2, 0, 1), int(self.labels[i])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch, read shard by shard in row order (far fewer page faults than item by item)."""
        idx = np.asarray(indices)
        size = self.params["size"]
        batch = np.empty((len(idx), size, size, 3), dtype=np.uint8)
        shards = self.shard_of[idx]
        for shard in np.unique(shards):
            where = np.nonzero(shards == shard)[0]
            rows = self.row_of[idx[where]]
            order = np.argsort(rows)
            batch[where[order]] = self._shards[shard][rows[order]]
        return torch.from_numpy(batch).permute(0, 3, 1, 2), torch.from_numpy(self.labels[idx])

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


def _keep_batch(batch):
    return batch


def make_loader(dataset: CachedDataset, batch_size: int, *, shuffle: bool, seed: int = 0, workers: int = 0,
                sampler=None, drop_last: bool = False) -> DataLoader:
    """A DataLoader that fetches whole batches through CachedDataset.__getitems__ (seeded order)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      collate_fn=_keep_batch, num_workers=workers, generator=generator, persistent_workers=workers > 0,
                      drop_last=drop_last)


def normalize(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 N x 3 x S x S → float, scaled to [0, 1] then standardised per channel by
    `geometry.normalise_` (one new tensor, then in place)."""
    m, s = (torch.from_numpy(v).to(batch.device).view(1, 3, 1, 1) for v in geometry.channel_stats(mean, std))
    return geometry.normalise_(batch.float(), m, s)
