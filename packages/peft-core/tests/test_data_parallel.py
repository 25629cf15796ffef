"""Recognising nn.DataParallel's replicas, which MEFT and DEFT refuse."""

from __future__ import annotations

from torch import nn

from peft_core.data_parallel import ONE_PROCESS_PER_GPU, is_data_parallel_replica


def test_a_replica_is_recognised_and_the_module_itself_is_not():
    model = nn.Sequential(nn.Linear(2, 2))
    # The shallow copy nn.parallel.replicate makes of every module before it copies tensors
    # (the tensor copies need CUDA devices).
    replica = model._replicate_for_data_parallel()
    assert is_data_parallel_replica(replica)
    assert not is_data_parallel_replica(model)
    assert not is_data_parallel_replica(nn.DataParallel(model))  # the wrapper is not a replica


def test_the_way_out_names_ddp_and_the_single_gpu_alternative():
    assert "one process per GPU" in ONE_PROCESS_PER_GPU
    assert "DistributedDataParallel" in ONE_PROCESS_PER_GPU
    assert "CUDA_VISIBLE_DEVICES" in ONE_PROCESS_PER_GPU
