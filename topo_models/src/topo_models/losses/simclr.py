"""SimCLR's NT-Xent (InfoNCE) loss (Chen et al. 2020), as TDANN trained with it (τ = 0.1).

Two views of B images give 2B embeddings; each view's positive is the other view of its image
and its negatives are the other 2B − 2 embeddings. Under DDP the embeddings of every replica are
gathered (with gradient), so each view sees the negatives of the global batch, as in VISSL.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError


def _gather_replicas(embeddings: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All replicas' embeddings (with gradient) and the offset of this replica's rows."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings, 0
    from torch.distributed.nn.functional import all_gather

    gathered = all_gather(embeddings)
    return torch.cat(gathered, dim=0), dist.get_rank() * embeddings.shape[0]


def nt_xent_loss(
    view_a: torch.Tensor, view_b: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """NT-Xent of paired embeddings.

    Args:
        view_a: (B, D) embeddings of the first view of each image.
        view_b: (B, D) embeddings of the second view, row i pairs with row i of ``view_a``.
        temperature: softmax temperature τ.

    Returns:
        0-d tensor: mean over the 2B views of −log softmax of the positive's cosine similarity / τ.
    """
    if view_a.shape != view_b.shape or view_a.dim() != 2:
        raise TopoError(
            "NT-Xent needs two (B, D) views of the same shape",
            field="views",
            found=(tuple(view_a.shape), tuple(view_b.shape)),
        )
    batch = view_a.shape[0]
    local = F.normalize(torch.cat([view_a, view_b]).float(), dim=1)  # rows: a_0..a_B-1, b_0..
    # Gather per view so the global layout is [a of all replicas, b of all replicas].
    all_a, offset = _gather_replicas(local[:batch])
    all_b, _ = _gather_replicas(local[batch:])
    candidates = torch.cat([all_a, all_b])  # (2 · world · B, D)
    world_batch = all_a.shape[0]
    logits = local @ candidates.T / temperature  # (2B, 2·world·B)
    rows = torch.arange(2 * batch, device=local.device)
    own = torch.cat([rows[:batch] + offset, rows[:batch] + offset + world_batch])
    positive = torch.cat([rows[:batch] + offset + world_batch, rows[:batch] + offset])
    logits = logits.masked_fill(F.one_hot(own, candidates.shape[0]).bool(), float("-inf"))
    return F.cross_entropy(logits, positive)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent_loss` with a fixed temperature."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise TopoError("temperature must be positive", field="temperature", found=temperature)
        self.temperature = float(temperature)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        return nt_xent_loss(view_a, view_b, self.temperature)
