"""The model every run trains: backbone (x → pooled N×D features) + head, with freeze/unfreeze by group."""

from __future__ import annotations

from torch import Tensor, nn

from snapid.models.spec import BackboneSpec


class Classifier(nn.Module):
    """backbone (x → pooled N×D features) + head (N×D → N×C logits), with freeze/unfreeze by group."""

    def __init__(self, spec: BackboneSpec, backbone: nn.Module, feature_dim: int, group_modules: list[nn.Module],
                 head: nn.Module, *, num_classes: int, head_kind: str, head_dims: tuple[int, ...], dropout: float):
        super().__init__()
        self.spec, self.feature_dim, self.num_classes = spec, int(feature_dim), int(num_classes)
        self.head_kind, self.head_dims, self.dropout = head_kind, tuple(int(d) for d in head_dims), float(dropout)
        self.backbone, self.head = backbone, head
        # groups are kept as parameter names, so they survive .to(), deepcopy and load_state_dict(assign=True)
        names = {id(p): n for n, p in backbone.named_parameters()}
        self._group_names = [[names[id(p)] for p in g.parameters() if id(p) in names] for g in group_modules]
        seen = [n for g in self._group_names for n in g]
        if sorted(seen) != sorted(names.values()):
            missing = sorted(set(names.values()) - set(seen))[:5]
            raise ValueError(f"{spec.name}: parameter groups must cover each backbone parameter once "
                             f"(missing {missing}, {len(seen) - len(set(seen))} repeated)")

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def groups(self) -> list[list[nn.Parameter]]:
        params = dict(self.backbone.named_parameters())
        return [[params[n] for n in g] for g in self._group_names] + [list(self.head.parameters())]

    def freeze_backbone(self) -> None:
        self.unfreeze(0)

    def unfreeze(self, last_n_groups: int | None = None) -> None:
        """Exactly the top ``last_n_groups`` backbone groups trainable (None = all; 0 = none); head always."""
        *backbone_groups, head = self.groups()
        n = len(backbone_groups) if last_n_groups is None else max(0, int(last_n_groups))
        for i, group in enumerate(backbone_groups):
            for p in group:
                p.requires_grad_(i >= len(backbone_groups) - n)
        for p in head:
            p.requires_grad_(True)
        self.train(self.training)  # re-apply the BN rule below at once

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode:
            trainable = any(p.requires_grad for p in self.backbone.parameters())
            if not trainable:  # fully frozen: deterministic features, equal to a cached-feature probe
                self.backbone.eval()
            else:  # frozen BatchNorm layers keep their running statistics
                for m in self.backbone.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        ps = list(m.parameters(recurse=False))
                        if ps and not any(p.requires_grad for p in ps):
                            m.eval()
        return self

    def config(self) -> dict:
        return {"model": self.spec.name, "num_classes": self.num_classes, "head": self.head_kind,
                "head_dims": list(self.head_dims), "dropout": self.dropout, "spec": self.spec.as_dict()}
