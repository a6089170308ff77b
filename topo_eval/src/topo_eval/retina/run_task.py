"""``python -m topo_eval task=retina_run``: a retina and a movie from the config, run by
``RetinaRunner`` into ``output_dir`` (resumable), with a summary for MLflow and a figure of the
output (``figures/output.png``) drawn from the chunk files afterwards."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path

from topo_data.retina.video import STIMULI, VideoSource, open_video, stimulus_source
from topo_eval.figure_files import write_figure
from topo_eval.retina.figures import plot_run_output, run_output_traces
from topo_eval.retina.runner import RUN_FILE, SUMMARY_FILE, RetinaRunner
from topo_models.errors import TopoError
from topo_models.retina import Resolution, Retina

log = logging.getLogger("topo_eval")
OUTPUT_FIGURE = "figures/output.png"  # in output_dir: sampled cells' rates, input luminance


def retina_from_config(settings: Mapping[str, object]) -> Retina:
    """The retina of ``task=retina_run``'s ``retina:`` block: an XML file, else a preset (or
    the defaults when null), at ``resolution``; then a parameters JSON if given."""
    keywords = {"spikes": bool(settings["spikes"]), "seed": int(settings["seed"])}
    if settings.get("xml"):
        retina = Retina.from_virtualretina_xml(settings["xml"], **keywords)
    else:
        resolution = Resolution(**dict(settings["resolution"]))
        if settings.get("preset"):
            retina = Retina.from_preset(settings["preset"], resolution=resolution, **keywords)
        else:
            retina = Retina(resolution=resolution, **keywords)
    if settings.get("parameters"):
        retina.load_parameters(settings["parameters"])
    return retina


def source_from_config(settings: Mapping[str, object], retina: Retina) -> VideoSource:
    """``input`` (a movie file, image folder or .npy) if set, else the named ``stimulus`` with
    its arguments; ``pixels_per_degree``/``steps_per_second`` default to the retina's."""
    luminance_range = retina.resolution.input_luminance_range
    if settings.get("input"):
        return open_video(settings["input"], luminance_range)
    arguments = dict(settings["stimulus"])
    name = arguments.pop("name")
    accepted = inspect.signature(STIMULI[name]).parameters if name in STIMULI else {}
    for key in ("pixels_per_degree", "steps_per_second"):
        if key in accepted and key not in arguments:
            arguments[key] = getattr(retina.resolution, key)
    return stimulus_source(name, luminance_range, **arguments)


def run_retina_task(cfg: object, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """``python -m topo_eval task=retina_run``: run, and return (summary.json, MLflow metrics)."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(cfg.retina, resolve=True)
    retina = retina_from_config(settings)
    source = source_from_config(settings, retina)
    background = settings.get("steady_state_luminance")
    if background is not None and not (output_dir / RUN_FILE).exists():
        b, c, h, w = _first_frame_shape(source)
        retina.initialize_steady_state(float(background), h, w, batch=b, channels=c)
    runner = RetinaRunner(
        retina,
        source,
        output_dir,
        chunk=int(settings["chunk"]),
        resume=bool(settings["resume"]),
        progress=bool(settings["progress"]),
        config={"retina": settings},
        settings={"steady_state_luminance": background},
    )
    summary = runner.run()
    log.info(
        "retina: %d frames in %d chunks → %s; mean rates (Hz) %s",
        summary.frames,
        summary.chunks,
        output_dir,
        {k: round(v, 3) for k, v in summary.mean_rates_hz.items()},
    )
    if summary.frames:
        # From the chunk files, after the run: nothing of the outputs is kept while it runs.
        steps = retina.resolution.steps_per_second
        traces = run_output_traces(output_dir, source, steps, seed=int(settings["seed"]))
        write_figure(plot_run_output(traces, steps), output_dir / OUTPUT_FIGURE)
        log.info("figure of %d sampled cells → %s", len(traces["cells"]), OUTPUT_FIGURE)
    metrics = {"frames": float(summary.frames)}
    metrics.update({f"{name}_mean_hz": v for name, v in summary.mean_rates_hz.items()})
    return output_dir / SUMMARY_FILE, metrics


def _first_frame_shape(source: VideoSource) -> tuple[int, int, int, int]:
    """(batch, channels, height, width), reading the first frame when the source cannot say."""
    if source.frame_shape is None:
        next(iter(source.chunks(1)), None)
    if source.frame_shape is None:
        raise TopoError("the video has no frames", field="retina.input", expected=">= 1 frame")
    return source.frame_shape
