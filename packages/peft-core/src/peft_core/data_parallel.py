"""``nn.DataParallel``: how a method package recognises its replicas, and the way out it names.

``nn.DataParallel`` copies the model onto each GPU for every forward and runs the copies in
threads. Methods that keep state beside the modules (MEFT's reversible stack, DEFT's captured
activations) cannot follow those copies; one process per GPU (DDP) has none of these problems.
"""

from __future__ import annotations

from torch import nn

ONE_PROCESS_PER_GPU = (
    "use one process per GPU, which trains with DistributedDataParallel (torchrun or accelerate "
    "launch), or limit this process to one GPU with CUDA_VISIBLE_DEVICES (the Hugging Face "
    "Trainer picks nn.DataParallel when one process sees several GPUs)"
)


def is_data_parallel_replica(module: nn.Module) -> bool:
    """Whether ``module`` is one of the copies ``nn.DataParallel`` made for its GPUs (torch marks
    them ``_is_replica``; with one GPU it runs the model itself, and nothing is a replica)."""
    return getattr(module, "_is_replica", False) is True
