"""Benchmarks of the spatial correlation loss (issue: foundation slice).

1. Share of a full training step (ResNet-18, batch 32, 112 px, CPU, SGD) taken by the spatial
   loss at k = 1 and k = 8 neighbourhoods per layer, against the same step without it.
2. The vectorised loss at k = 8 over eight layers against a straightforward loop over layers and
   neighbourhoods (TDANN-style corrcoef → lower triangles → Pearson), with equal values.

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)``.
Run: ``python benchmarks/spatial_loss.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from topo_models import create_model
from topo_models.losses import SpatialCorrelationLoss
from topo_models.positions import RetinotopicLayout

BATCH, SIZE, REPEATS = 32, 112, 7


def plain_neighbourhood_loss(responses: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """One neighbourhood, written the straightforward way (the baseline)."""
    centred = responses - responses.mean(dim=0)
    std = centred.pow(2).sum(dim=0).div(responses.shape[0] - 1).sqrt()
    std = torch.where(std == 0, torch.ones_like(std), std)
    corr = (centred.T @ centred / (responses.shape[0] - 1) / torch.outer(std, std)).clamp(-1, 1)
    similarity = 1 / (torch.cdist(coordinates, coordinates) + 1)
    rows, cols = torch.tril_indices(len(coordinates), len(coordinates), offset=-1)
    r, s = corr[rows, cols], similarity[rows, cols]
    r, s = r - r.mean(), s - s.mean()
    return (1 - (r @ s) / (r.norm() * s.norm())) / 2


def median_time(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = create_model("resnet18_spatial", head="classifier", num_classes=10)
    positions = RetinotopicLayout(n_neighborhoods=2000, seed=0).build(model, SIZE)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    labels = torch.randint(0, 10, (BATCH,))
    weights = {name: 0.25 for name in positions}
    losses = {
        k: SpatialCorrelationLoss(positions, weights, neighborhoods_per_step=k, seed=0)
        for k in (1, 8)
    }

    def step(spatial: SpatialCorrelationLoss | None) -> None:
        logits, features = model(images)
        loss = F.cross_entropy(logits, labels)
        if spatial is not None:
            loss = loss + spatial(features)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # Interleave plain and spatial steps so drifts of the machine hit both alike.
    plain, with_k = [], {1: [], 8: []}
    step(None)
    for _ in range(REPEATS):
        plain.append(median_time(lambda: step(None), 1))
        for k, spatial in losses.items():
            with_k[k].append(median_time(lambda s=spatial: step(s), 1))
    base = statistics.median(plain)
    print(f"training step without spatial loss: {base * 1000:.0f} ms (ratio 1.00 vs itself)")
    # The loss alone, forward + backward, on real block outputs (less noisy than differences).
    _, features = model(images)
    features = {k: v.detach().requires_grad_(True) for k, v in features.items()}
    for k, spatial in losses.items():
        full = statistics.median(with_k[k])
        alone = median_time(lambda s=spatial: s(features)[0].backward())
        print(
            f"spatial loss k={k} share of step (loss alone / step): {100 * alone / full:.2f} % "
            f"(ratio {full / base:.3f} vs the step without it; budget "
            f"{2 if k == 1 else 10} %)"
        )

    # 2. Vectorised vs a loop over layers and neighbourhoods, same draws, equal values.
    spatial = losses[8]
    draws_state = spatial.generator.get_state()
    rows = spatial._draw_rows()
    spatial.generator.set_state(draws_state)

    def looped() -> torch.Tensor:
        total = 0.0
        for index, name in enumerate(spatial.layer_names):
            flat = features[name].flatten(1)
            coords = getattr(spatial, f"coordinates_{index}")
            width = positions[name].neighborhood_indices.shape[1]  # rows are padded per group
            values = [
                plain_neighbourhood_loss(flat[:, r[:width]], coords[r[:width]]) for r in rows[index]
            ]
            total = total + 0.25 * torch.stack(values).mean()
        return total

    def vectorised() -> torch.Tensor:
        spatial.generator.set_state(draws_state)
        return spatial(features)[0]

    a, b = looped().item(), vectorised().item()
    assert abs(a - b) < 1e-5 * max(1.0, abs(a)), (a, b)
    t_loop = median_time(lambda: looped().backward())
    t_vec = median_time(lambda: vectorised().backward())
    print(
        f"loop over layers x neighbourhoods, k=8, fwd+bwd: {t_loop * 1000:.1f} ms "
        f"(ratio 1.00 vs itself; loss {a:.6f})"
    )
    print(
        f"vectorised spatial loss, k=8, fwd+bwd: {t_vec * 1000:.1f} ms "
        f"(ratio {t_loop / t_vec:.2f} vs the loop; loss {b:.6f})"
    )


if __name__ == "__main__":
    main()
