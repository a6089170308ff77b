"""How a checkpoint's tensors differ from a model's: one report for every loader.

Loading published weights must say exactly what does not fit — missing keys, unexpected keys,
shapes — rather than a bare ``load_state_dict`` traceback. TDANN and Sensorium loaders share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

MAX_LISTED = 10


def listing(keys: Iterable[object]) -> str:
    """The first few items, then how many more: an error line stays readable."""
    items = list(keys)
    shown = ", ".join(str(k) for k in items[:MAX_LISTED])
    return shown + (f", … (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def state_dict_mismatches(
    expected: Mapping[str, tuple[int, ...]],
    given: Mapping[str, torch.Tensor],
    model_name: str,
) -> list[str]:
    """Lines naming missing keys, unexpected keys and shape mismatches (empty: it fits)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs {model_name} {expected[k]}"
        for k in sorted(set(expected) & set(given))
        if tuple(given[k].shape) != expected[k]
    ]
    lines = []
    if missing:
        lines.append(f"missing {len(missing)} key(s): {listing(missing)}")
    if unexpected:
        lines.append(f"unexpected {len(unexpected)} key(s): {listing(unexpected)}")
    if shapes:
        lines.append(f"{len(shapes)} shape mismatch(es): {listing(shapes)}")
    return lines
