"""A core cut from a torchvision image-recognition network (neuralpredictors' transfer core).

The first ``layers`` modules of the network's convolutional part (``model.features`` for
VGG/AlexNet/SqueezeNet/MobileNet/DenseNet…, the children before the global pool for
ResNet-style models) feed a final batch norm and ReLU. The cut network is frozen unless
``fine_tune``. Weights come only from a local state-dict file: this project never downloads,
so ``pretrained=True`` needs ``weights_path``.

State-dict keys follow neuralpredictors 0.3.0: ``features.TransferLearning.{i}.*``,
``features.OutBatchNorm.*``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.cores.common import check_int, check_momentum

_PROBE_SIZE = 128  # pixels of the zero image that measures the output channel count
_SPATIAL_END = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


def _load_weights(model: nn.Module, weights_path: Path, name: str) -> None:
    if not weights_path.is_file():
        raise TopoError(
            "transfer-core weights file not found (weights are never downloaded)",
            file=weights_path,
            field="weights_path",
            expected=f"a local state dict of torchvision's {name}",
        )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused or a corrupt file
        raise TopoError(
            "transfer-core weights file is not a loadable state dict",
            file=weights_path,
            field="weights_path",
            expected="a file written by torch.save(model.state_dict())",
            found=f"{type(error).__name__}: {error}",
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TopoError(
            "transfer-core weights file holds no state dict",
            file=weights_path,
            expected="a mapping of parameter names to tensors",
            found=type(state).__name__,
        )
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise TopoError(
            f"transfer-core weights do not match torchvision's {name}",
            file=weights_path,
            expected=f"the {len(own)} keys and shapes of {name}().state_dict()",
            found=f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}",
        )
    model.load_state_dict(state)


def _convolutional_part(model: nn.Module, name: str) -> list[nn.Module]:
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        return list(features.children())
    children = list(model.children())
    for index, child in enumerate(children):
        if isinstance(child, _SPATIAL_END):
            if index == 0:
                break
            return children[:index]
    raise TopoError(
        "this torchvision model has neither a .features stack nor a ResNet-style trunk",
        field="tl_model_name",
        expected="e.g. vgg16, alexnet, squeezenet1_1, mobilenet_v2, resnet18",
        found=name,
    )


class TransferLearningCore(nn.Module):
    """The first ``layers`` modules of a torchvision network, then BatchNorm and ReLU.

    Args:
        input_channels: 1 (repeated to the network's 3) or the network's own input channels.
        tl_model_name: a torchvision classification model name (``vgg16``, ``resnet18``, …).
        layers: number of modules kept from the convolutional part.
        pretrained: load ``weights_path``; True without a path is an error (no downloads).
        weights_path: a ``torch.save(model.state_dict())`` file of the full torchvision model,
            read with ``weights_only=True``.
        final_batchnorm: add BatchNorm2d after the cut network.
        final_nonlinearity: add a ReLU at the end.
        momentum: momentum of the final batch norm.
        fine_tune: train the cut network too (it is frozen otherwise).
    """

    def __init__(
        self,
        input_channels: int,
        tl_model_name: str,
        layers: int,
        pretrained: bool = False,
        weights_path: str | Path | None = None,
        final_batchnorm: bool = True,
        final_nonlinearity: bool = True,
        momentum: float = 0.1,
        fine_tune: bool = False,
    ) -> None:
        super().__init__()
        self.input_channels = check_int("input_channels", input_channels, 1)
        check_int("layers", layers, 1)
        self.momentum = check_momentum(momentum)
        import torchvision  # imported here: ~2 s (it loads torch._dynamo)

        available = torchvision.models.list_models(module=torchvision.models)
        if tl_model_name not in available:
            raise TopoError(
                "unknown torchvision classification model",
                field="tl_model_name",
                expected="a name from torchvision.models.list_models(module=torchvision.models)",
                found=tl_model_name,
            )
        if pretrained and weights_path is None:
            raise TopoError(
                "pretrained weights must come from a local file; this project never downloads",
                field="weights_path",
                expected=f"the path of a saved {tl_model_name} state dict",
                found=None,
            )
        if weights_path is not None and not pretrained:
            raise TopoError(
                "weights_path given for a randomly initialised core",
                field="pretrained",
                expected="True when weights_path is set",
                found=pretrained,
            )
        model = torchvision.models.get_model(tl_model_name, weights=None)
        if weights_path is not None:
            _load_weights(model, Path(weights_path), tl_model_name)
        modules = _convolutional_part(model, tl_model_name)
        if layers > len(modules):
            raise TopoError(
                "the network's convolutional part has fewer modules",
                field="layers",
                expected=f"1 … {len(modules)}",
                found=layers,
            )
        clipped = nn.Sequential(*modules[:layers])
        for module in clipped.modules():
            if getattr(module, "inplace", False):
                module.inplace = False  # features keep every module's output
        first_conv = next((m for m in clipped.modules() if isinstance(m, nn.Conv2d)), None)
        net_channels = first_conv.in_channels if first_conv is not None else input_channels
        if input_channels not in (net_channels, 1):
            raise TopoError(
                "input channels do not fit the network",
                field="input_channels",
                expected=f"1 (repeated) or {net_channels}",
                found=input_channels,
            )
        self.repeat_input = input_channels == 1 and net_channels != 1
        self.net_channels = net_channels
        self.fine_tune = bool(fine_tune)
        if not fine_tune:
            for param in clipped.parameters():
                param.requires_grad_(False)
        self.features = nn.Sequential()
        self.features.add_module("TransferLearning", clipped)
        self._outchannels = self._probe_channels()
        if final_batchnorm:
            self.features.add_module(
                "OutBatchNorm", nn.BatchNorm2d(self._outchannels, momentum=self.momentum)
            )
        if final_nonlinearity:
            self.features.add_module("OutNonlin", nn.ReLU())
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def _probe_channels(self) -> int:
        clipped = self.features.TransferLearning
        was_training = clipped.training
        clipped.eval()
        with torch.no_grad():
            probe = torch.zeros(1, self.net_channels, _PROBE_SIZE, _PROBE_SIZE)
            channels = clipped(probe).shape[1]
        clipped.train(was_training)
        return int(channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (batch, input_channels, h, w) → (output, {"layer{i}": each kept module's output})."""
        if self.repeat_input:
            x = x.expand(-1, self.net_channels, -1, -1)
        features = {}
        for index, module in enumerate(self.features.TransferLearning):
            x = module(x)
            features[f"layer{index}"] = x
        for name in ("OutBatchNorm", "OutNonlin"):
            if hasattr(self.features, name):
                x = getattr(self.features, name)(x)
        return x, features

    def regularizer(self) -> torch.Tensor:
        """0: the transfer core has no penalty."""
        return self._zero.clone()

    @property
    def outchannels(self) -> int:
        """Channels of the cut network's output."""
        return self._outchannels
