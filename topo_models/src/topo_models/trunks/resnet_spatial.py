"""ResNet-18 whose BasicBlock outputs are the topographic layers of TDANN.

The trunk is torchvision's own ResNet-18, so torchvision state dicts load unchanged. ``forward``
returns ``(output, features)``: ``features`` maps the eight block names ``layer1.0 … layer4.1``
(torchvision dotted names) to block outputs (after the residual add and ReLU), the layers TDANN
puts on the cortical sheet (Margalit et al. 2024, Neuron; see docs/tdann.md).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.registry import register_model

BLOCK_NAMES: tuple[str, ...] = tuple(f"layer{s}.{b}" for s in range(1, 5) for b in range(2))

# Which cortical area each block stands for (TDANN's BRAIN_MAPPING for ResNet-18).
RESNET18_AREAS: dict[str, str] = {
    "layer1.0": "retina",
    "layer1.1": "retina",
    "layer2.0": "V1",
    "layer2.1": "V1",
    "layer3.0": "V2",
    "layer3.1": "V4",
    "layer4.0": "VTC",
    "layer4.1": "VTC",
}

HeadKind = Literal["none", "classifier", "projector"]


class ResNet18Spatial(nn.Module):
    """ResNet-18 trunk with an optional head on the pooled 512-d features.

    Args:
        head: ``"none"`` (output = pooled features, 512-d), ``"classifier"`` (Linear 512 → classes)
            or ``"projector"`` (SimCLR MLP 512 → 512 → ReLU → projection_dim; the ReLU is kept,
            unlike VISSL's default that silently linearised TDANN's first projector).
        num_classes: classes of the classifier head; required when ``head="classifier"``.
        projection_dim: output size of the SimCLR projector.
    """

    cortical_areas: dict[str, str] = RESNET18_AREAS

    def __init__(
        self,
        head: HeadKind = "none",
        num_classes: int | None = None,
        projection_dim: int = 128,
    ) -> None:
        super().__init__()
        if head not in ("none", "classifier", "projector"):
            raise TopoError(
                "unknown head", field="head", expected="none|classifier|projector", found=head
            )
        if head == "classifier" and (num_classes is None or num_classes < 1):
            raise TopoError(
                "a classifier head needs the number of classes",
                field="num_classes",
                expected="a positive integer",
                found=num_classes,
            )
        if projection_dim < 1:
            raise TopoError("bad projector size", field="projection_dim", found=projection_dim)
        self.head_kind = head
        from torchvision.models import resnet18  # imported here: ~2 s (it loads torch._dynamo)

        base = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = (
            base.conv1,
            base.bn1,
            base.relu,
            base.maxpool,
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            base.layer1,
            base.layer2,
            base.layer3,
            base.layer4,
        )
        self.avgpool = base.avgpool
        if head == "classifier":
            self.fc: nn.Module = nn.Linear(512, int(num_classes))
        elif head == "projector":
            self.fc = nn.Sequential(
                nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, projection_dim)
            )
        else:
            self.fc = nn.Identity()

    @property
    def layer_names(self) -> tuple[str, ...]:
        return BLOCK_NAMES

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (batch, 3, height, width) → (output, {block name: (batch, C, H', W')})."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise TopoError(
                "ResNet18Spatial takes RGB image batches",
                field="input shape",
                expected="(batch, 3, height, width)",
                found=tuple(x.shape),
            )
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features: dict[str, torch.Tensor] = {}
        for stage_index, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            for block_index, block in enumerate(stage):
                h = block(h)
                features[f"layer{stage_index + 1}.{block_index}"] = h
        pooled = torch.flatten(self.avgpool(h), 1)
        return self.fc(pooled), features


@register_model("resnet18_spatial", "topo_models.ResNet18Spatial")
def resnet18_spatial(
    head: HeadKind = "none", num_classes: int | None = None, projection_dim: int = 128
) -> ResNet18Spatial:
    """TDANN's trunk: torchvision ResNet-18 with eight topographic BasicBlock outputs."""
    return ResNet18Spatial(head=head, num_classes=num_classes, projection_dim=projection_dim)
