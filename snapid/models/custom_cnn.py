"""A small CNN trained from scratch (the model-comparison project's custom model).

Four conv-BN-ReLU-maxpool blocks (32-64-128-256 channels) and global average pooling:
about 0.4 M parameters, any input of at least 16×16, 256-d features.
"""

from __future__ import annotations

from torch import nn

CHANNELS = (32, 64, 128, 256)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),  # bias is redundant before BN
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class CustomCNN(nn.Module):
    def __init__(self, channels: tuple[int, ...] = CHANNELS):
        super().__init__()
        ins = (3, *channels[:-1])
        self.blocks = nn.Sequential(*(_block(a, b) for a, b in zip(ins, channels, strict=True)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.out_dim = channels[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.flatten(self.pool(self.blocks(x)))


def build_custom_cnn(pretrained: bool = False) -> tuple[nn.Module, int, list[nn.Module]]:
    """Registry builder: no pretrained weights exist, so ``pretrained`` is ignored. One group per block."""
    model = CustomCNN()
    return model, model.out_dim, list(model.blocks)
