"""`python -m gwq_align.swift_entry sft|rlhf ARGS...`: ms-swift's own entry, plus one gwq patch.

ms-swift 4.6 refuses `--padding_free`/`--packing` unless attn_impl is a flash-attention one.
Since transformers 5, a padding-free batch (one row, position_ids restarting at 0 for every
dialogue, no attention_mask) gets a per-dialogue block-causal mask for sdpa/eager too
(`masking_utils.find_packed_sequence_indices`), so the numerics are right without flash-attn;
sdpa just spends some FLOPs on masked-out blocks. We lift the check for attn_impl=sdpa only,
and only where transformers has that function. tests/test_align_train.py checks the losses
match the padded run.

Second, token counting: gwq passes `--include_num_input_tokens_seen true` (ms-swift's parser
takes only a bool) and we turn transformers' resulting "all" into "non_padding", so
`num_input_tokens_seen` and tokens/s count real tokens, never padding.

Everything else is ms-swift unchanged: same argument parser, same trainers.
"""

from __future__ import annotations

import sys

PACKED_SDPA_IMPLS = ("sdpa",)


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


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("sft", "rlhf"):
        raise SystemExit("usage: python -m gwq_align.swift_entry sft|rlhf --model ... (ms-swift arguments)")
    command, args = argv[0], argv[1:]
    from swift.cli.utils import try_use_single_device_mode

    try_use_single_device_mode()
    allow_padding_free_with_sdpa()
    count_real_tokens()
    sys.argv = [f"swift-{command}"] + args
    if command == "sft":
        from swift.pipelines import sft_main
        sft_main(args)
    else:
        from swift.pipelines import rlhf_main
        rlhf_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
