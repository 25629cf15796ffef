"""Replaying dropout exactly: save the RNG *state* before each sub-function, restore it to recompute.

The reference re-seeded the global generator with a fresh random seed before every sub-function,
which made runs irreproducible and left the global RNG somewhere a vanilla run would never be. Here
the state is captured (CPU, and the CUDA device's generator when the streams live on a GPU) and the
recompute runs inside ``torch.random.fork_rng``, so the global RNG after backward is exactly what
forward left — as with ``torch.utils.checkpoint(preserve_rng_state=True)``.

A state is kept only for generators the sub-function actually drew from (compared after it ran):
without dropout nothing is kept, and on a GPU the 5 KB CPU state gives way to the 16-byte CUDA one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

RngStates = dict[str, torch.Tensor]


def capture_rng_state(device: torch.device) -> RngStates:
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def states_consumed_since(before: RngStates, device: torch.device) -> RngStates | None:
    """The entries of ``before`` whose generator has advanced since; None if none did."""
    now = capture_rng_state(device)
    changed = {name: state for name, state in before.items() if not torch.equal(state, now[name])}
    return changed or None


@contextlib.contextmanager
def replayed_rng(states: RngStates | None, device: torch.device) -> Iterator[None]:
    """Run the block with the generators as they were when ``states`` were captured; restore after."""
    if states is None:  # the sub-function drew no random numbers
        yield
        return
    devices = [device] if "cuda" in states else []
    with torch.random.fork_rng(devices=devices, enabled=True):
        if "cpu" in states:
            torch.set_rng_state(states["cpu"])
        if "cuda" in states:
            torch.cuda.set_rng_state(states["cuda"], device)
        yield
