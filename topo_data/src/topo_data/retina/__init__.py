"""Data of the retina models: recorded (or simulated) responses to fit, stimuli, movies.

``RetinaResponseData`` (``data=retina_responses``) serves windows of a stimulus movie and the
spike counts it evoked; ``topo_data.retina.stimuli`` generates the standard stimuli of retinal
physiology in physical units; ``topo_data.retina.video`` streams movies in chunks.
"""

from topo_data.retina.responses import RetinaBatch, RetinaResponseData, simulate_recording

__all__ = ["RetinaBatch", "RetinaResponseData", "simulate_recording"]
