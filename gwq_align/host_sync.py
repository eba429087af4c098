"""Fewer points where the CPU waits for the GPU in a padding-free training step.

A step is only as fast as the GPU is kept fed. Each host<-device sync makes the CPU wait until the
GPU has finished everything queued, so whatever the CPU does next (fetch a batch, run the Python of
28 layers' forward) is time the GPU sits idle. Three such waits come before any real work of a
padding-free micro-batch:

1. ms-swift's DataLoaderShard copies each batch to the GPU with a blocking copy, even from pinned
   memory (`swift.utils.to_device`, non_blocking=False); accelerate's `non_blocking` setting never
   reaches it. We copy with non_blocking=True: from the DataLoader's pinned buffers that is the
   documented async pattern (torch's host allocator keeps a buffer until its copy is done), from
   pageable memory CUDA copies synchronously anyway.
2. transformers' `find_packed_sequence_indices` asks `(...).all()` of the GPU position_ids to
   decide whether a row is packed.
3. gwq_varlen reads the dialogue boundaries from the GPU position_ids (gwq_align/attention.py).

For 2 and 3 the answer is already on the host: the batch's position_ids before the copy. The copy
keeps that host tensor on the device tensor (`host_copy`), and both read it there, with the same
functions on the same values. Anything without a host copy (other loaders, views) takes the old
path.

Off unless GWQ_ASYNC_COPIES=1. It does what it says (a 7B `fast` step's host syncs: 20 -> 13 per
optimizer step, counted on an H200), but it measured no speed-up: a LoRA step launches ~12k small
kernels and the CPU launching them, not the syncs, is what the GPU waits on (docs/align.md, round 5).
So ms-swift's own copies stay the default until a step is no longer launch-bound.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

ATTR = "_gwq_host"


def host_copy(t: torch.Tensor) -> torch.Tensor | None:
    """The CPU tensor a device tensor was copied from by this module's batch copy, if any."""
    return getattr(t, ATTR, None)


def to_device_async(original):
    def to_device(data, device, non_blocking: bool = False):
        out = original(data, device, non_blocking=True)
        if isinstance(data, Mapping) and isinstance(out, Mapping):
            src, dst = data.get("position_ids"), out.get("position_ids")
            if isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor) and src.device.type == "cpu" and dst is not src:
                setattr(dst, ATTR, src)
        return out

    to_device.__wrapped__ = original
    return to_device


def async_batch_copies() -> None:
    from swift.dataloader import dispatcher, shard

    for module in (shard, dispatcher):
        if not hasattr(module.to_device, "__wrapped__"):
            module.to_device = to_device_async(module.to_device)


def to_device_like(host: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Copy a small host tensor to `like`'s device without waiting: pageable copies to a GPU sync first."""
    if like.device.type != "cuda":
        return host.to(like.device)
    return host.pin_memory().to(like.device, non_blocking=True)


def packed_indices_from_host() -> None:
    from transformers import masking_utils

    original = masking_utils.find_packed_sequence_indices
    if hasattr(original, "__wrapped__"):
        return

    def find_packed_sequence_indices(position_ids):
        host = host_copy(position_ids)
        if host is None or host.shape != position_ids.shape:
            return original(position_ids)
        indices = original(host)
        return None if indices is None else to_device_like(indices, position_ids)

    find_packed_sequence_indices.__wrapped__ = original
    masking_utils.find_packed_sequence_indices = find_packed_sequence_indices


def install() -> None:
    if os.environ.get("GWQ_ASYNC_COPIES") != "1":
        return
    async_batch_copies()
    packed_indices_from_host()
