"""Memory of a long retina run (issue 7: stimuli and running): flat in the movie's length.

A 100,000-frame generated stream (binary white noise at 50×50 px, 100 s at 1 kHz, each second
made on the fly from its own seed, so the movie never exists whole) goes through
``RetinaRunner`` with spikes on (human.parvo, chunks of 1,000 frames) into a temporary
directory. At 10k, 50k and 100k frames it prints the process's peak RSS
(``resource.getrusage``: the high-water mark since start, imports included) and its current RSS
(psutil, when installed). Were the outputs kept, memory would grow by their size: 100k frames
× 2 outputs × 2,500 px are 0.47 GiB as bool, 1.9 GiB as float32.

Prints one line per measurement. Run: ``python benchmarks/retina_memory.py`` (1–3 minutes on
2 cores; one torch thread, as the machine is usually shared).
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from topo_data.retina_stimuli import white_noise
from topo_data.retina_video import IterableSource
from topo_eval.retina_runner import RetinaRunner, RunProgress
from topo_models.retina import Retina

FRAMES, SIZE, CHUNK, SECOND = 100_000, 50, 1000, 1000
MARKS = (10_000, 50_000, 100_000)


def peak_rss_mib() -> float:
    """High-water resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / 2**20


def noise_seconds() -> Iterator[np.ndarray]:
    """The movie, one second (1,000 frames) at a time, each from its own seed."""
    for second in range(FRAMES // SECOND):
        yield white_noise(1.0, SIZE, SIZE, steps_per_second=1000.0, seed=second)


def report(label: str, frames: int, started: float) -> None:
    current = current_rss_mib()
    now = "n/a" if current is None else f"{current:.1f} MiB"
    rate = frames / max(time.perf_counter() - started, 1e-9)
    print(
        f"{label}: {frames:>7,} frames, peak RSS {peak_rss_mib():.1f} MiB, current RSS {now}, "
        f"{rate:,.0f} frames/s so far",
        flush=True,
    )


def main() -> None:
    torch.set_num_threads(1)
    retina = Retina.from_preset("human.parvo", spikes=True, seed=0)
    source = IterableSource(noise_seconds, n_frames=FRAMES, name="white noise, 1 s per seed")
    started = time.perf_counter()
    report("before the run", 0, started)

    def on_chunk(progress: RunProgress) -> None:
        if progress.frames_done in MARKS:
            report("after", progress.frames_done, started)

    with tempfile.TemporaryDirectory() as folder:
        runner = RetinaRunner(
            retina, source, Path(folder), chunk=CHUNK, progress=False, on_chunk=on_chunk
        )
        summary = runner.run()
        disk = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
        print(
            f"outputs on disk: {disk:.1f} MiB in {summary.chunks} chunk files; mean rates "
            + ", ".join(f"{k} {v:.2f} Hz" for k, v in summary.mean_rates_hz.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
