"""SLURM's pre-timeout / preemption signal under submitit: checkpoint at once, then requeue.

submitit installs a handler for its signal (``SIGUSR2`` unless ``SUBMITIT_PREEMPT_SIGNAL`` names
another) that pickles the job again (the Hydra launcher's ``checkpoint()`` resubmits the same
job), requeues it and exits — wherever the training loop happens to be, so everything since the
last periodic checkpoint would be trained again, and an exit inside a step could leave state half
updated. :func:`deferred_requeue` puts a handler in front that only notes the signal; the loop asks
:func:`requested` after every step, writes a whole checkpoint (temp file, then rename) and calls
:func:`requeue`, which hands over to submitit's handler. The requeued job runs in the same run
directory and resumes from that checkpoint, ending with the same weights as a run never stopped.

Outside submitit (no handler of its signal installed) nothing changes and nothing is checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from topo_train.runtime import DistributedContext

log = logging.getLogger(__name__)

PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's own variable (default USR2)
REQUEUE_EXIT = -1  # what submitit's handler exits with after requeueing (rank 0 on SLURM)

Handler = Callable[[int, types.FrameType | None], Any]


class RequeueExit(SystemExit):
    """The job stops here to be requeued; its checkpoint is on disk (a run ends ``SCHEDULED``
    in MLflow, not ``FAILED``)."""


class _State:
    """What :func:`deferred_requeue` installed: the signal, submitit's handler, the request."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: Handler | None = None
        self.requested = False


_state = _State()


def preempt_signal() -> int:
    """The signal submitit sends before a timeout or a preemption (``SIGUSR2`` by default)."""
    name = "SIG" + os.environ.get(PREEMPT_SIGNAL_ENV, "USR2")
    number = getattr(signal, name, None)
    return int(number) if number is not None else int(signal.SIGUSR2)


def _note(signum: int, frame: types.FrameType | None) -> None:
    """The deferred handler: record the request; the loop acts on it between two steps."""
    _state.requested = True
    log.warning(
        "received %s (timeout or preemption): checkpointing after this step, then requeueing",
        signal.Signals(signum).name,
    )


@contextlib.contextmanager
def deferred_requeue() -> Iterator[bool]:
    """While training, defer submitit's preemption handler to the loop's next step boundary.

    Yields whether a handler was deferred (False outside a submitit job, or off the main
    thread, where Python cannot set handlers). On leaving, submitit's handler is put back.
    """
    signum = preempt_signal()
    if "SUBMITIT_EXECUTOR" not in os.environ or (
        threading.current_thread() is not threading.main_thread()
    ):
        yield False
        return
    previous = signal.getsignal(signum)
    if not callable(previous):  # SIG_DFL / SIG_IGN / unset: not a submitit job
        yield False
        return
    _state.signum, _state.previous, _state.requested = signum, previous, False
    signal.signal(signum, _note)
    try:
        yield True
    finally:
        signal.signal(signum, previous)
        _state.signum, _state.previous, _state.requested = None, None, False


def active() -> bool:
    """Whether a submitit handler is deferred (the loop checks for a request)."""
    return _state.previous is not None


def requested(context: DistributedContext, device: torch.device | None = None) -> bool:
    """Whether to stop for a requeue now; in a DDP job every rank gets the same answer (any
    rank that heard the signal stops them all at the same step)."""
    if not active():
        return False
    flag = _state.requested
    if context.enabled and dist.is_initialized():
        tensor = torch.tensor([int(flag)], device=device or torch.device("cpu"))
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        flag = bool(tensor.item())
    return flag


def requeue(context: DistributedContext, step: int) -> NoReturn:
    """Hand over to submitit's handler once the checkpoint is written (call on every rank).

    Rank 0 runs it: the job is pickled again and requeued (submitit refuses once
    ``max_num_timeout`` timeouts are spent, and the job then ends as failed, checkpoint kept).
    The other ranks wait for that, then exit too.
    """
    if context.is_main:
        log.warning("checkpoint written at step %d; requeueing the job", step)
    previous, signum = _state.previous, _state.signum
    pending: BaseException | None = None
    if context.is_main and previous is not None and signum is not None:
        try:
            previous(signum, None)
        except SystemExit as exit_:  # submitit requeued the job and exits
            pending = exit_
        except BaseException as error:  # noqa: BLE001 — re-raised after the barrier
            pending = error
    context.barrier()  # the others leave only after rank 0 has requeued
    if pending is not None and not isinstance(pending, SystemExit):
        raise pending
    code = pending.code if isinstance(pending, SystemExit) else REQUEUE_EXIT
    raise RequeueExit(code)
