"""Padding-free attention without the flash-attn package: torch's own varlen flash kernel.

ms-swift's padding-free batches are one row holding several dialogues, position_ids restarting
at 0 for each. With flash-attn installed, transformers hands flash_attn_varlen_func the dialogue
boundaries. Without it, sdpa gets a dense T x T block-diagonal mask: every one of the T^2 scores
is computed (8x the work for 8 dialogues a row), and on Hopper torch picks cuDNN for masked
sdpa, which builds a new plan for every new T (~80 ms each, profiled on an H100; a padding-free
row has a new T nearly every step). Together that was ~40% of a `fast` step.

torch >= 2.10 ships the flash varlen kernel itself (torch.nn.attention.varlen.varlen_attn). This
module registers it with transformers as attn_implementation "gwq_varlen": for a CUDA row with no
padding mask and no KV cache, the dialogue boundaries come from position_ids and only the
block-diagonal part is computed. Everywhere else (CPU, padded batches, generation with a cache,
sliding windows, a torch without varlen_attn) it is exactly transformers' sdpa.

    >>> from gwq_align import attention
    >>> attention.register()   # then load the model with attn_implementation="gwq_varlen"
"""

from __future__ import annotations

import functools
import inspect

import torch

from gwq_align import host_sync

NAME = "gwq_varlen"

try:
    from torch.nn.attention.varlen import varlen_attn
    _CAUSAL = {"is_causal": True} if "is_causal" in inspect.signature(varlen_attn).parameters else {"window_size": (-1, 0)}
except ImportError:  # torch < 2.10
    varlen_attn = None
    _CAUSAL = {}

_gqa_native = [True]  # the flash kernel takes fewer K/V heads than query heads; repeat them if a build refuses
_last: list = [None, None]  # (position_ids, (cu_seqlens, max_len)): one computation per forward, not per layer


@functools.cache
def _flash_capable(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index) >= (8, 0)  # the flash kernels need Ampere or newer


def _varlen_applies(device: torch.device, batch_size: int, attention_mask, q_length: int, kv_length: int) -> bool:
    """The mask function and the attention function must agree on this, or a packed row would lose its mask."""
    return (varlen_attn is not None and device.type == "cuda" and batch_size == 1 and attention_mask is None
            and q_length == kv_length and _flash_capable(device.index if device.index is not None else torch.cuda.current_device()))


def segments(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(cu_seqlens int32 on the GPU, longest dialogue) from position_ids like [0 1 2 0 1 0 1 2 3]."""
    if _last[0] is position_ids:
        return _last[1]
    # The kernel needs max_len as a Python int: read the batch's host copy when the loader kept one
    # (gwq_align/host_sync.py), else copy the row back (the CPU then waits for the GPU to catch up).
    host = host_sync.host_copy(position_ids)
    pos = (host if host is not None and host.shape == position_ids.shape else position_ids).reshape(-1).cpu()
    if pos.numel() == 0 or pos[0] != 0:
        raise ValueError("gwq_varlen: position_ids of a packed row must start at 0")
    starts = torch.nonzero(pos == 0).reshape(-1)
    cu = torch.cat([starts, torch.tensor([pos.numel()])]).to(torch.int32)
    result = (host_sync.to_device_like(cu, position_ids), int(cu.diff().max()))
    _last[0], _last[1] = position_ids, result
    return result


def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      sliding_window=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    batch, heads, q_len, dim = query.shape
    if _varlen_applies(query.device, batch, attention_mask, q_len, key.shape[2]):
        # The mask function has already returned "no mask" for this call, so sdpa is no longer a safe
        # fallback here: it would let a packed row's dialogues see each other.
        if position_ids is None or sliding_window or dropout or not getattr(module, "is_causal", True):
            raise ValueError("attn_impl gwq_varlen covers causal attention without dropout or sliding window, "
                             "with position_ids; use attn_impl sdpa for this model")
        cu, longest = segments(position_ids)
        q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, heads, dim)
        if k.shape[1] != heads and _gqa_native[0]:
            try:
                out = varlen_attn(q, k, v, cu, cu, longest, longest, scale=scaling, **_CAUSAL)
                return out.unsqueeze(0), None
            except RuntimeError:
                _gqa_native[0] = False
        if k.shape[1] != heads:
            k, v = (t.repeat_interleave(heads // t.shape[1], dim=1) for t in (k, v))
        out = varlen_attn(q, k, v, cu, cu, longest, longest, scale=scaling, **_CAUSAL)
        return out.unsqueeze(0), None  # (1, T, heads, dim), as sdpa_attention_forward returns
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  sliding_window=sliding_window, **kwargs)


def attention_mask(batch_size: int, q_length: int, kv_length: int, *args, attention_mask=None, device="cpu", **kwargs):
    from transformers.masking_utils import sdpa_mask

    if _varlen_applies(torch.device(device), batch_size, attention_mask, q_length, kv_length):
        return None  # boundaries come from position_ids in attention_forward
    return sdpa_mask(batch_size, q_length, kv_length, *args, attention_mask=attention_mask, device=device, **kwargs)


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, attention_mask)
