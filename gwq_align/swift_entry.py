"""`python -m gwq_align.swift_entry sft|rlhf ARGS...`: ms-swift's own entry, plus a few gwq patches.

ms-swift 4.6 refuses `--padding_free`/`--packing` unless attn_impl is a flash-attention one.
Since transformers 5, a padding-free batch (one row, position_ids restarting at 0 for every
dialogue, no attention_mask) gets a per-dialogue block-causal mask for sdpa/eager too
(`masking_utils.find_packed_sequence_indices`), so the numerics are right without flash-attn;
sdpa just spends FLOPs on masked-out blocks. We lift the check for attn_impl=sdpa (only where
transformers has that function) and for gwq's own "gwq_varlen" (gwq_align/attention.py, registered
here: torch's flash varlen kernel, no mask at all). tests/test_align_train.py checks the losses
match the padded run.

Second, token counting: gwq passes `--include_num_input_tokens_seen true` (ms-swift's parser
takes only a bool) and we turn transformers' resulting "all" into "non_padding", so
`num_input_tokens_seen` and tokens/s count real tokens, never padding.

Third, speed: under bf16 autocast (ms-swift's mixed precision), peft casts each LoRA layer's
input to the adapter's fp32 dtype and autocast casts it straight back to bf16 for the matmul:
two full passes over every activation entering 196 LoRA layers of a 7B, forward and backward.
We skip that cast only in exactly that case (see keep_lora_inputs_in_autocast_dtype): same bf16
matmuls, dropout scaled in fp32 either way on CUDA (only which elements drop is drawn
differently), and the fp32 adapter weights and their AdamW state stay fp32. +22% tokens/s on a
7B step (H100). GWQ_PEFT_INPUT_CAST=1 turns this off.

Fourth, host syncs: transformers adds each micro-batch's token count to an int with `.item()`,
which makes the CPU wait for the GPU to finish that micro-batch before it may queue the next
one, and with several GPUs it is one all-gather per micro-batch. We keep the running count on
the device and read it only where it is used: at logging, saving, evaluation and the end
(defer_token_count). Same numbers in logs and checkpoints (tested against transformers' own).
With the fast recipes' two other sync settings (non-blocking batch copies, no NaN filter on
logged losses), one H200 ran `fast` at 11,303 tokens/s, and 11,297 with all three off: no
measured speed-up on one GPU; kept because it is what was measured and it never waits.
GWQ_EAGER_TOKEN_COUNT=1 turns it off.

Fifth, the adapter's output: peft adds each LoRA as `result + lora_B(h) * scaling`, three passes
over the layer's whole output (B's product, the scaled copy, the sum) and one more backward for the
scale. `torch.addmm(result, h, B.T, alpha=scaling)` is the same sum in one GEMM whose epilogue scales
and adds (add_lora_output_in_one_gemm); it also rounds to bf16 once instead of three times.
+7% on the bare 7B step (H200); end to end within run-to-run noise. GWQ_PEFT_PLAIN_FORWARD=1 turns it off.

Sixth, opt-in (GWQ_ASYNC_COPIES=1): the waits before each padding-free micro-batch (ms-swift's
blocking batch copy, transformers' packed-row check, gwq_varlen's boundaries) removed by
gwq_align/host_sync.py. Fewer syncs, no measured speed-up, so off by default.

Seventh, gwq_checkpoint_layers (GWQ_CHECKPOINT_LAYERS from gwq-align): gradient checkpointing on the
first N decoder layers only, so a recipe can spend exactly the memory it has on skipped recomputation.

Everything else is ms-swift unchanged: same argument parser, same trainers.
"""

from __future__ import annotations

import sys

from gwq_align import attention, host_sync

PACKED_SDPA_IMPLS = ("sdpa", "gwq_varlen")


def packed_masks_supported() -> bool:
    try:
        from transformers.masking_utils import find_packed_sequence_indices  # noqa: F401
    except ImportError:
        return False
    return True


def allow_padding_free_with_sdpa() -> None:
    from swift.arguments import SftArguments

    original = SftArguments._check_padding_free

    def check(self):
        if (self.padding_free or self.packing) and self.attn_impl in PACKED_SDPA_IMPLS and packed_masks_supported():
            if self.packing:
                self.padding_free = True
            return
        return original(self)

    SftArguments._check_padding_free = check


def count_real_tokens() -> None:
    from transformers import TrainingArguments

    original = TrainingArguments.__post_init__

    def post_init(self):
        original(self)
        if self.include_num_input_tokens_seen == "all":
            self.include_num_input_tokens_seen = "non_padding"

    TrainingArguments.__post_init__ = post_init


def defer_token_count() -> None:
    import functools
    import os

    import torch
    from transformers import Trainer, TrainerCallback

    if os.environ.get("GWQ_EAGER_TOKEN_COUNT") == "1":
        return
    original_track, original_init = Trainer._track_num_input_tokens, Trainer.__init__

    def track(self, inputs):
        ids = inputs.get(getattr(self.model, "main_input_name", "input_ids")) if isinstance(inputs, dict) else None
        if self.args.include_num_input_tokens_seen == "no" or not isinstance(ids, torch.Tensor):
            return original_track(self, inputs)  # its own warnings and fallbacks
        pad = getattr(self.processing_class, "pad_token_id", None)
        if self.args.include_num_input_tokens_seen != "non_padding":
            count = torch.tensor(ids.numel(), device=ids.device)
        elif isinstance(inputs.get("attention_mask"), torch.Tensor):
            count = inputs["attention_mask"].sum()
        elif pad is not None:
            count = (ids != pad).sum()
        else:
            return original_track(self, inputs)
        pending = getattr(self, "_gwq_pending_tokens", None)
        self._gwq_pending_tokens = count.to(torch.int64) if pending is None else pending + count

    def flush(trainer):
        pending = getattr(trainer, "_gwq_pending_tokens", None)
        if pending is not None:
            trainer._gwq_pending_tokens = None
            # Every rank reaches the same flush points (same control flags), so the gather pairs up.
            trainer.state.num_input_tokens_seen += int(trainer.accelerator.gather(pending.to(trainer.args.device)).sum().item())

    class FlushTokens(TrainerCallback):
        """Runs after transformers' own flow callback has decided whether this step logs, saves or evaluates."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_log or control.should_save or control.should_evaluate or control.should_training_stop:
                flush(self.trainer)

        def on_epoch_end(self, args, state, control, **kwargs):
            flush(self.trainer)

        def on_train_end(self, args, state, control, **kwargs):
            flush(self.trainer)

    @functools.wraps(original_init)  # ms-swift reads Trainer.__init__'s signature
    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(FlushTokens(self))

    Trainer._track_num_input_tokens = track
    Trainer.__init__ = init


def _no_dropout(layer) -> bool:
    import torch

    return all(isinstance(d, torch.nn.Identity) for d in getattr(layer, "lora_dropout", {}).values())


def keep_lora_inputs_in_autocast_dtype() -> None:
    import os

    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    if os.environ.get("GWQ_PEFT_INPUT_CAST") == "1":
        return
    original = BaseTunerLayer._cast_input_dtype

    def cast(self, x, dtype):
        # Only plain LoRA (no DoRA & co, whose extra elementwise maths would change precision), only
        # when autocast would turn the fp32 copy back into exactly this tensor's dtype anyway, and only
        # where dropout gives the same bits on bf16 as on fp32: CUDA's dropout scales in fp32, the CPU's
        # in bf16 (1/0.95 -> 1.0547), so on CPU only without dropout.
        if (isinstance(x, torch.Tensor) and dtype == torch.float32 and not getattr(self, "lora_variant", None)
                and torch.is_autocast_enabled(x.device.type) and x.dtype == torch.get_autocast_dtype(x.device.type)
                and (x.device.type == "cuda" or _no_dropout(self))):
            return x
        return original(self, x, dtype)

    BaseTunerLayer._cast_input_dtype = cast


def _add_scaled_product(result, h, weight, scaling: float):
    """result + (h @ weight.T) * scaling, as one GEMM where the dtypes allow it."""
    import torch

    if not (torch.is_autocast_enabled(result.device.type) or result.dtype == h.dtype == weight.dtype):
        return result + torch.nn.functional.linear(h, weight) * scaling  # peft's own maths
    out = torch.addmm(result.reshape(-1, result.shape[-1]), h.reshape(-1, h.shape[-1]), weight.t(), alpha=scaling)
    return out.view(result.shape)


def add_lora_output_in_one_gemm() -> None:
    import os

    from peft.tuners.lora.layer import Linear

    if os.environ.get("GWQ_PEFT_PLAIN_FORWARD") == "1":
        return
    original = Linear.forward

    def forward(self, x, *args, **kwargs):
        # Only the plain case: adapters on, unmerged, no per-row adapter names, no DoRA & co, no LoRA bias.
        if (args or kwargs or self.disable_adapters or self.merged or self.lora_variant
                or any(b.bias is not None for b in self.lora_B.values())):
            return original(self, x, *args, **kwargs)
        result = self.base_layer(x)
        dtype = result.dtype
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            lora_A = self.lora_A[name]
            h = lora_A(self.lora_dropout[name](self._cast_input_dtype(x, lora_A.weight.dtype)))
            result = _add_scaled_product(result, h, self.lora_B[name].weight, self.scaling[name])
        return result.to(dtype)

    forward.__wrapped__ = original
    Linear.forward = forward


def checkpoint_only_first(model, keep: int) -> tuple[int, int]:
    """Leave gradient checkpointing on for the first `keep` decoder layers that have it, off for the rest.

    Checkpointing every layer frees the most memory and costs a whole extra forward; a layer left alone
    keeps its activations and skips the recomputation, so `keep` trades memory for speed.
    Returns (layers checkpointed, layers that were)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    for layer in layers[keep:]:
        layer.gradient_checkpointing = False
    return min(keep, len(layers)), len(layers)


def checkpoint_first_layers() -> None:
    """gwq_checkpoint_layers (gwq-align passes it as GWQ_CHECKPOINT_LAYERS): applied right after ms-swift
    has turned gradient checkpointing on for the model."""
    import os

    value = os.environ.get("GWQ_CHECKPOINT_LAYERS")
    if not value:
        return
    keep = int(value)
    from swift.trainers.mixin import SwiftMixin

    original = SwiftMixin._prepare_gradient_checkpointing

    def prepare(self, model):
        original(self, model)
        done, total = checkpoint_only_first(model, keep)
        print(f"[gwq] gradient checkpointing on {done} of {total} decoder layers", flush=True)

    SwiftMixin._prepare_gradient_checkpointing = prepare


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("sft", "rlhf"):
        raise SystemExit("usage: python -m gwq_align.swift_entry sft|rlhf --model ... (ms-swift arguments)")
    command, args = argv[0], argv[1:]
    from swift.cli.utils import try_use_single_device_mode

    try_use_single_device_mode()
    allow_padding_free_with_sdpa()
    count_real_tokens()
    keep_lora_inputs_in_autocast_dtype()
    add_lora_output_in_one_gemm()
    defer_token_count()
    host_sync.install()
    checkpoint_first_layers()
    attention.register()
    sys.argv = [f"swift-{command}"] + args
    if command == "sft":
        from swift.pipelines import sft_main
        sft_main(args)
    else:
        from swift.pipelines import rlhf_main
        rlhf_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
