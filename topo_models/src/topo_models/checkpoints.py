"""Read TDANN/VISSL checkpoints into ``ResNet18Spatial`` and write them back in VISSL's layout.

TDANN trains with VISSL, whose ``torch.save`` dict nests the weights as
``ckpt["classy_state_dict"]["base_model"]["model"]["trunk" | "heads"]``. The trunk state dict
holds every tensor twice: ``base_model.<torchvision key>`` and
``_feature_blocks.<block>.<param>`` (blocks ``conv1, maxpool, layer1_0 … layer4_1, avgpool``;
``bn1`` is absent), because spacetorch's ``SpatialResNet18`` references the same modules under
two names. Heads are ``0.0.clf.0.*`` / ``0.1.clf.0.*`` (SimCLR projector) or
``0.clf.0.*`` (supervised classifier).

Files are read with ``weights_only=True``: a checkpoint that needs arbitrary unpickling is refused,
never executed. Loading is strict, and shapes are compared before ``load_state_dict`` so a wrong
architecture (a ResNet-50, say) fails with a readable list of keys instead of a wall of text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from topo_models.atomic import atomic_write
from topo_models.errors import TopoError
from topo_models.safe_load import read_torch_file
from topo_models.state_dict_report import listing, state_dict_mismatches
from topo_models.trunks.resnet_spatial import ResNet18Spatial

__all__ = ["load_tdann_checkpoint", "save_vissl_style_checkpoint"]

_VISSL_PATH = ("classy_state_dict", "base_model", "model")
_BASE_PREFIX = "base_model."
_BLOCKS_PREFIX = "_feature_blocks."

# VISSL head key → ResNet18Spatial key (after the ``fc.`` prefix).
_PROJECTOR_HEAD = re.compile(r"^0\.([01])\.clf\.0\.(weight|bias)$")
_CLASSIFIER_HEAD = re.compile(r"^0\.clf\.0\.(weight|bias)$")
# Keys a ResNet18Spatial / torchvision state dict uses for the same heads.
_PROJECTOR_FC = re.compile(r"^fc\.[02]\.(weight|bias)$")
_CLASSIFIER_FC = re.compile(r"^fc\.(weight|bias)$")
_BLOCK_NAME = re.compile(r"^layer(\d)_(\d+)\.")


def load_tdann_checkpoint(
    path: str | Path,
    head: str | None = None,
    map_location: str | torch.device = "cpu",
) -> ResNet18Spatial:
    """Build a ``ResNet18Spatial`` from a TDANN/VISSL checkpoint or a torchvision state dict.

    Accepted contents: the VISSL dict above; a plain torchvision ResNet-18 state dict
    (``fc.weight`` of shape (classes, 512) gives a classifier, no ``fc`` gives ``head="none"``); a
    ``ResNet18Spatial`` state dict; or ``{"state_dict": …}`` / ``{"model": …}`` wrapping one.

    Args:
        path: the checkpoint file.
        head: ``"none"``, ``"classifier"`` or ``"projector"``; ``None`` infers it from the head
            keys. ``"none"`` ignores any heads in the file; the others require matching heads.
        map_location: passed to ``torch.load``.

    Returns:
        The model in eval mode; ``num_classes`` / ``projection_dim`` come from the head shapes.

    Raises:
        TopoError: missing, corrupt or non-tensor file; unknown layout; missing, unexpected or
            mismatching keys (field ``"trunk"`` or ``"heads"``); disagreeing duplicate families.
    """
    path = Path(path)
    ckpt = _read(path, map_location)
    trunk_raw, heads_raw, heads_field = _locate(ckpt, path)
    trunk = _map_trunk(trunk_raw, path)
    heads = _map_heads(heads_raw, path, heads_field)
    kind = _head_kind(heads, head, path)
    if kind == "none":
        heads = {}
    model = _build(kind, heads, path)
    _check_keys(model, trunk, heads, path)
    model.load_state_dict({**trunk, **heads}, strict=True)
    return model.eval()


def save_vissl_style_checkpoint(
    model: ResNet18Spatial, path: str | Path, *, phase_idx: int = 0, iteration: int = 0
) -> Path:
    """Write ``model`` in TDANN's VISSL layout (both trunk key families, VISSL head keys).

    The file is written to a temporary sibling and moved into place with ``os.replace``, so a
    crash never leaves a half-written checkpoint under ``path``.

    Returns:
        The path written.
    """
    if not isinstance(model, ResNet18Spatial):
        raise TopoError(
            "only ResNet18Spatial models can be exported in VISSL layout",
            file=path,
            field="model",
            expected="ResNet18Spatial",
            found=type(model).__name__,
        )
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    trunk: dict[str, torch.Tensor] = {}
    blocks: dict[str, torch.Tensor] = {}
    heads: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc."):
            heads[_vissl_head_key(key, model.head_kind)] = value
            continue
        trunk[_BASE_PREFIX + key] = value
        if not key.startswith("bn1."):
            blocks[_BLOCKS_PREFIX + re.sub(r"^layer(\d)\.(\d+)\.", r"layer\1_\2.", key)] = value
    ckpt = {
        "phase_idx": int(phase_idx),
        "iteration": int(iteration),
        "classy_state_dict": {
            "phase_idx": int(phase_idx),
            "base_model": {"model": {"trunk": {**trunk, **blocks}, "heads": heads}},
        },
    }
    atomic_write(path, lambda handle: torch.save(ckpt, handle))
    return path


# --------------------------------------------------------------------------- reading


def _read(path: Path, map_location: str | torch.device) -> object:
    return read_torch_file(path, map_location)


def _locate(
    ckpt: object, path: Path
) -> tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor], str]:
    """Return (trunk state dict, heads state dict, name of the heads field) from any layout."""
    if not isinstance(ckpt, Mapping):
        raise TopoError(
            "checkpoint is not a dict", file=path, expected="dict", found=type(ckpt).__name__
        )
    if "classy_state_dict" in ckpt:
        node: object = ckpt
        walked: list[str] = []
        for name in _VISSL_PATH:
            walked.append(name)
            if not isinstance(node, Mapping) or name not in node:
                raise TopoError(
                    "VISSL checkpoint lacks the model weights",
                    file=path,
                    field=".".join(walked),
                    expected="classy_state_dict.base_model.model.{trunk,heads}",
                )
            node = node[name]
        if not isinstance(node, Mapping) or "trunk" not in node:
            raise TopoError(
                "VISSL checkpoint lacks the trunk", file=path, field="trunk", expected="a dict"
            )
        trunk = _tensor_dict(node["trunk"], path, "trunk")
        heads = _tensor_dict(node.get("heads") or {}, path, "heads")
        return trunk, heads, "heads"
    for wrapper in ("state_dict", "model"):
        if wrapper in ckpt and isinstance(ckpt[wrapper], Mapping):
            return _locate(ckpt[wrapper], path)
    flat = _tensor_dict(ckpt, path, "state dict")
    trunk = {k: v for k, v in flat.items() if not k.startswith("fc.")}
    heads = {k: v for k, v in flat.items() if k.startswith("fc.")}
    return trunk, heads, "heads"


def _tensor_dict(obj: object, path: Path, field: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise TopoError("expected a state dict", file=path, field=field, found=type(obj).__name__)
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TopoError(
            "state dict holds non-tensor entries",
            file=path,
            field=field,
            expected="only tensors",
            found=listing(bad),
        )
    return dict(obj)


# --------------------------------------------------------------------------- key mapping


def _map_trunk(raw: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Map both VISSL families (or plain keys) to ResNet18Spatial keys; check duplicates agree."""
    base: dict[str, torch.Tensor] = {}
    blocks: dict[str, torch.Tensor] = {}
    other: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith(_BASE_PREFIX):
            stripped = key[len(_BASE_PREFIX) :]
            if not stripped.startswith("fc."):  # spacetorch's trunk fc is Identity
                base[stripped] = value
        elif key.startswith(_BLOCKS_PREFIX):
            blocks[_BLOCK_NAME.sub(r"layer\1.\2.", key[len(_BLOCKS_PREFIX) :])] = value
        else:
            other[key] = value
    if base and blocks:
        only_blocks = sorted(set(blocks) - set(base))
        if only_blocks:
            raise TopoError(
                "_feature_blocks holds keys that base_model lacks; the duplicate families must "
                "reference the same modules",
                file=path,
                field="trunk",
                found=listing(_BLOCKS_PREFIX + k for k in only_blocks),
            )
        differing = [
            k
            for k, v in blocks.items()
            if v.shape != base[k].shape or not torch.equal(v, base[k].to(v.device))
        ]
        if differing:
            raise TopoError(
                "base_model.* and _feature_blocks.* disagree; they should be the same tensors",
                file=path,
                field="trunk",
                found=listing(differing),
            )
    return {**other, **(base if base else blocks)}


def _map_heads(raw: Mapping[str, torch.Tensor], path: Path, field: str) -> dict[str, torch.Tensor]:
    """VISSL head keys → ``fc.*`` keys; ``fc.*`` keys pass through; anything else is kept as is
    so that the strict key check reports it as unexpected."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if match := _PROJECTOR_HEAD.match(key):
            new = f"fc.{0 if match.group(1) == '0' else 2}.{match.group(2)}"
        elif match := _CLASSIFIER_HEAD.match(key):
            new = f"fc.{match.group(1)}"
        else:
            new = key
        if new in mapped:
            raise TopoError(
                "two head keys map to the same weight", file=path, field=field, found=new
            )
        mapped[new] = value
    return mapped


def _head_kind(heads: Mapping[str, torch.Tensor], head: str | None, path: Path) -> str:
    projector = any(_PROJECTOR_FC.match(k) for k in heads)
    classifier = any(_CLASSIFIER_FC.match(k) for k in heads)
    if projector and classifier:
        raise TopoError(
            "heads mix projector and classifier keys",
            file=path,
            field="heads",
            found=listing(sorted(heads)),
        )
    found = "projector" if projector else "classifier" if classifier else "none"
    if head is None:
        if found == "none" and heads:
            raise TopoError(
                "unrecognised head keys",
                file=path,
                field="heads",
                expected="0.0.clf.0.*, 0.1.clf.0.* (SimCLR) or 0.clf.0.* (supervised)",
                found=listing(sorted(heads)),
            )
        return found
    if head not in ("none", "classifier", "projector"):
        raise TopoError(
            "unknown head", field="head", expected="none|classifier|projector", found=head
        )
    if head != "none" and head != found:
        raise TopoError(
            f"asked for a {head} head but the checkpoint's heads are not one",
            file=path,
            field="heads",
            expected=head,
            found=f"{found}: {listing(sorted(heads))}",
        )
    return head


def _build(kind: str, heads: Mapping[str, torch.Tensor], path: Path) -> ResNet18Spatial:
    if kind == "classifier":
        weight = heads.get("fc.weight")
        if weight is None or weight.dim() != 2:
            raise TopoError(
                "classifier head lacks a 2-d weight",
                file=path,
                field="heads",
                expected="fc.weight / 0.clf.0.weight of shape (classes, 512)",
                found=None if weight is None else tuple(weight.shape),
            )
        return ResNet18Spatial(head="classifier", num_classes=int(weight.shape[0]))
    if kind == "projector":
        weight = heads.get("fc.2.weight")
        if weight is None or weight.dim() != 2:
            raise TopoError(
                "projector head lacks its second layer",
                file=path,
                field="heads",
                expected="0.1.clf.0.weight of shape (projection_dim, 512)",
                found=None if weight is None else tuple(weight.shape),
            )
        return ResNet18Spatial(head="projector", projection_dim=int(weight.shape[0]))
    return ResNet18Spatial(head="none")


def _check_keys(
    model: ResNet18Spatial,
    trunk: Mapping[str, torch.Tensor],
    heads: Mapping[str, torch.Tensor],
    path: Path,
) -> None:
    """Compare keys and shapes against the model before loading, per field."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for field, given, own in (
        ("trunk", trunk, {k: s for k, s in expected.items() if not k.startswith("fc.")}),
        ("heads", heads, {k: s for k, s in expected.items() if k.startswith("fc.")}),
    ):
        lines = state_dict_mismatches(own, given, "ResNet18Spatial")
        if lines:
            raise TopoError(
                "checkpoint does not fit ResNet18Spatial (is it another architecture?); "
                + "; ".join(lines),
                file=path,
                field=field,
            )


def _vissl_head_key(key: str, kind: str) -> str:
    if kind == "projector":
        layer, param = key[len("fc.") :].split(".")
        return f"0.{0 if layer == '0' else 1}.clf.0.{param}"
    return f"0.clf.0.{key[len('fc.') :]}"
