"""Proof that trainers read what we write: ms-swift's own dataset loader and qwen2_5 template accept
every swift/sharegpt file convert and prepare write, and TRL's chat-template helper accepts trl-dpo rows.

Uses the session's tiny Qwen2 model (real Qwen2 tokenizer, built offline) for the tokenizer.
"""

import json

import pytest
from conftest import REPO
from typer.testing import CliRunner

from gwq_data.cli import app

DIALOGUES = REPO / "tests" / "data" / "dialogues.jsonl"
runner = CliRunner()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("written")
    for fmt in ("swift-sft", "sharegpt", "swift-dpo", "trl-dpo"):
        result = runner.invoke(app, ["convert", str(DIALOGUES), "--to", fmt, "--out", str(out / f"{fmt}.jsonl"), "--pairs", "all"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["prepare", str(DIALOGUES), "--out-dir", str(out / "prepared"), "--val-ratio", "0.3"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def template(tiny_model):
    from swift import get_processor, get_template

    processor = get_processor(str(tiny_model), model_type="qwen2")
    return get_template(processor, template_type="qwen2_5", max_length=4096)


def swift_load(path):
    from swift import load_dataset

    train, val = load_dataset([str(path)], strict=True, load_from_cache_file=False)
    assert val is None
    return train


def trained_text(template, input_ids, labels):
    """The tokens the loss sees, decoded."""
    return template.tokenizer.decode([t for t, lab in zip(input_ids, labels) if lab != -100])


@pytest.mark.parametrize("name", ["swift-sft.jsonl", "sharegpt.jsonl", "prepared/sft/train.jsonl", "prepared/sft/val.jsonl"])
def test_sft_files_load_and_encode(written, template, name):
    path = written / name
    source = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    dataset = swift_load(path)
    assert len(dataset) == len(source) > 0
    template.set_mode("train")
    for row in dataset:
        encoded = template.encode(row)
        labels = trained_text(template, encoded["input_ids"], encoded["labels"])
        assistant = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        assert assistant[-1] in labels and labels.rstrip().endswith("<|im_end|>")
        assert not any(u in labels for u in users)  # no loss on the prompt


@pytest.mark.parametrize("name", ["swift-dpo.jsonl", "prepared/dpo/train.jsonl", "prepared/dpo/val.jsonl"])
def test_dpo_files_load_and_encode_with_rejected_response(written, template, name):
    path = written / name
    source = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    dataset = swift_load(path)
    assert len(dataset) == len(source) > 0
    template.set_mode("rlhf")
    try:
        for row, src in zip(dataset, source):
            assert row["rejected_response"] == src["rejected_response"]
            encoded = template.encode(row)
            chosen = trained_text(template, encoded["chosen_input_ids"], encoded["chosen_labels"])
            rejected = trained_text(template, encoded["rejected_input_ids"], encoded["rejected_labels"])
            assert src["messages"][-1]["content"] in chosen and src["rejected_response"] not in chosen
            assert src["rejected_response"] in rejected
    finally:
        template.set_mode("train")


def test_trl_dpo_rows_fit_trl(written, tiny_model):
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = [json.loads(line) for line in (written / "trl-dpo.jsonl").read_text("utf-8").splitlines()]
    assert rows
    for row in rows:
        assert is_conversational(row)
        text = apply_chat_template(row, tokenizer)
        assert text["prompt"].endswith("<|im_start|>assistant\n")
        assert text["chosen"].startswith(row["chosen"][0]["content"])
        assert text["rejected"].startswith(row["rejected"][0]["content"])
