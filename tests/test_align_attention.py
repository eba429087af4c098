"""gwq_align/attention.py: the "gwq_varlen" attention is sdpa wherever the varlen kernel does not apply,
and on CUDA gives sdpa's block-diagonal results for packed rows (those cases run on the GPU box)."""

import pytest
import torch

from gwq_align import attention

cuda = pytest.mark.skipif(not torch.cuda.is_available() or attention.varlen_attn is None,
                          reason="needs CUDA and torch.nn.attention.varlen")


def test_segments_from_position_ids():
    cu, longest = attention.segments(torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]]))
    assert cu.tolist() == [0, 3, 5, 9] and cu.dtype == torch.int32 and longest == 4
    with pytest.raises(ValueError, match="start at 0"):
        attention.segments(torch.tensor([[3, 4, 0, 1]]))


def _packed(device, dtype, heads=4, kv_heads=2, dim=16, lengths=(5, 3, 7)):
    g = torch.Generator().manual_seed(0)
    total = sum(lengths)
    q = torch.randn(1, heads, total, dim, generator=g).to(device, dtype)
    k = torch.randn(1, kv_heads, total, dim, generator=g).to(device, dtype)
    v = torch.randn(1, kv_heads, total, dim, generator=g).to(device, dtype)
    pos = torch.cat([torch.arange(n) for n in lengths])[None].to(device)
    return q, k, v, pos, lengths


def _per_dialogue_reference(q, k, v, lengths):
    """Each dialogue on its own through plain causal sdpa, concatenated: what packing must equal."""
    outs, start = [], 0
    rep = q.shape[1] // k.shape[1]
    for n in lengths:
        sl = slice(start, start + n)
        kk, vv = (t[:, :, sl].repeat_interleave(rep, dim=1) for t in (k, v))
        outs.append(torch.nn.functional.scaled_dot_product_attention(q[:, :, sl], kk, vv, is_causal=True))
        start += n
    return torch.cat(outs, dim=2).transpose(1, 2)  # (1, T, heads, dim)


class _Attn(torch.nn.Module):
    is_causal = True


def test_cpu_falls_back_to_sdpa_with_the_mask_it_is_given():
    """On CPU the mask function builds sdpa's block mask, and the forward is sdpa with it."""
    from transformers.masking_utils import and_masks, causal_mask_function, packed_sequence_mask_function

    q, k, v, pos, lengths = _packed("cpu", torch.float32)
    seq_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    mask = attention.attention_mask(1, q.shape[2], q.shape[2], mask_function=and_masks(
        causal_mask_function, packed_sequence_mask_function(seq_ids)), allow_is_causal_skip=False, device="cpu")
    assert mask is not None and mask.shape == (1, 1, q.shape[2], q.shape[2])
    module = _Attn()
    module.num_key_value_groups = q.shape[1] // k.shape[1]
    out, _ = attention.attention_forward(module, q, k, v, mask, position_ids=pos)
    assert torch.allclose(out, _per_dialogue_reference(q, k, v, lengths), atol=1e-5)


@cuda
@pytest.mark.parametrize("kv_heads", [2, 4])
def test_cuda_packed_row_equals_each_dialogue_alone(kv_heads):
    q, k, v, pos, lengths = _packed("cuda", torch.bfloat16, kv_heads=kv_heads, dim=64, lengths=(300, 17, 450, 1))
    assert attention.attention_mask(1, q.shape[2], q.shape[2], device="cuda") is None
    module = _Attn()
    module.num_key_value_groups = q.shape[1] // k.shape[1]
    for t in (q, k, v):
        t.requires_grad_(True)
    out, _ = attention.attention_forward(module, q, k, v, None, position_ids=pos)
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    ref = _per_dialogue_reference(q2, k2, v2, lengths)
    grads_ref = torch.autograd.grad(ref.float().square().sum(), (q2, k2, v2))
    assert (out.float() - ref.float()).abs().max() < 2e-2
    for g, r in zip(grads, grads_ref):
        assert (g.float() - r.float()).abs().max() / r.float().abs().max() < 2e-2
