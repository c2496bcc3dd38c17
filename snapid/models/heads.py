"""Classification heads put on top of a backbone's pooled features."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from snapid.errors import SnapidError

HEADS = ("linear", "mlp")


def make_head(kind: str, in_dim: int, num_classes: int, dims: Sequence[int] = (512, 256, 128, 64),
              dropout: float = 0.2) -> nn.Module:
    """(N, in_dim) features → (N, num_classes) logits.

    "linear": Dropout + Linear (the usual transfer-learning head).
    "mlp": Linear-LayerNorm-ReLU-Dropout blocks over ``dims`` then Linear (the product project's
    512-256-128-64 head). LayerNorm rather than BatchNorm1d so a last batch of one sample trains
    and a frozen-feature cache gives the same numbers as live features.
    """
    if num_classes < 1:
        raise SnapidError(f"num_classes must be at least 1, got {num_classes}", code="bad_config", status=422)
    if not 0.0 <= dropout < 1.0:
        raise SnapidError(f"dropout must be in [0, 1), got {dropout}", code="bad_config", status=422)
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))
    if kind == "mlp":
        dims = tuple(int(d) for d in dims)
        if not dims or min(dims) < 1:
            raise SnapidError(f"head_dims must be positive sizes, got {dims}", code="bad_config", status=422)
        layers: list[nn.Module] = []
        prev = in_dim
        for d in dims:
            layers += [nn.Linear(prev, d), nn.LayerNorm(d), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            prev = d
        layers.append(nn.Linear(prev, num_classes))
        return nn.Sequential(*layers)
    raise SnapidError(f"unknown head {kind!r}; valid heads: {', '.join(HEADS)}", code="bad_config", status=422)
