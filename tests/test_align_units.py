"""gwq-align's plumbing without training: recipes, dataset resolution, run-record parsing, argv building."""

import json
from pathlib import Path

import pytest

from gwq_align import data, recipes, runrecord, train
from gwq_data.errors import UsageError
from gwq_data.jsonl import file_sha256

ROW = {"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "嗟乎！答也。"}],
       "rejected_response": "答。"}


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_seed_recipe_is_the_tutorial():
    args = recipes.resolve("sft", "seed")
    assert {k: args[k] for k in ("tuner_type", "lora_rank", "lora_alpha", "lora_dropout", "target_modules",
                                 "learning_rate", "num_train_epochs", "max_length", "per_device_train_batch_size",
                                 "gradient_accumulation_steps", "warmup_ratio", "max_grad_norm", "gradient_checkpointing",
                                 "eval_steps", "save_steps", "save_total_limit", "logging_steps")} == {
        "tuner_type": "lora", "lora_rank": 8, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear",
        "learning_rate": 5e-5, "num_train_epochs": 1, "max_length": 1024, "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 16, "warmup_ratio": 0.03, "max_grad_norm": 1.0, "gradient_checkpointing": True,
        "eval_steps": 100, "save_steps": 100, "save_total_limit": 2, "logging_steps": 10}


@pytest.mark.parametrize("kind", ["sft", "dpo"])
@pytest.mark.parametrize("name", ["fast", "fast-24gb"])
def test_fast_keeps_seed_numerics_and_effective_batch(kind, name):
    seed, fast = recipes.resolve(kind, "seed"), recipes.resolve(kind, name)
    for key in ("lora_rank", "lora_alpha", "lora_dropout", "learning_rate", "num_train_epochs", "max_length",
                "warmup_ratio", "max_grad_norm", "target_modules"):
        assert fast[key] == seed[key], key
    assert (fast["per_device_train_batch_size"] * fast["gradient_accumulation_steps"]
            == seed["per_device_train_batch_size"] * seed["gradient_accumulation_steps"])
    assert fast["padding_free"] is True
    # fast-24gb recomputes every layer; fast only some (the rest keep their activations)
    expected = {("sft", "fast"): (True, 12), ("sft", "fast-24gb"): (True, None),
                ("dpo", "fast"): (True, 18), ("dpo", "fast-24gb"): (True, None)}[kind, name]
    assert (fast["gradient_checkpointing"], fast.get("gwq_checkpoint_layers")) == expected
    if kind == "dpo":
        assert (fast["rlhf_type"], fast["beta"], fast["rpo_alpha"], fast["loss_type"]) == ("dpo", 0.1, 1.0, "sigmoid")


def test_precedence_recipe_then_config_then_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 1.0e-4\nlora_rank: 16\n")
    args = recipes.resolve("sft", "seed", config=config, overrides={"lora_rank": 32})
    assert (args["learning_rate"], args["lora_rank"], args["lora_alpha"]) == (1e-4, 32, 32)
    assert recipes.parse_set(["weight_decay=0.0", "target_modules=[q_proj, v_proj]", "packing=true"]) == {
        "weight_decay": 0.0, "target_modules": ["q_proj", "v_proj"], "packing": True}
    with pytest.raises(UsageError, match="expected key=value"):
        recipes.parse_set(["nonsense"])
    with pytest.raises(UsageError, match="unknown recipe 'turbo' for sft; choose one of: cpu-tiny, fast, fast-24gb, seed"):
        recipes.resolve("sft", "turbo")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        recipes.resolve("sft", "seed", config=tmp_path / "bad.yaml")


def test_prepared_dir_and_plain_jsonl(tmp_path):
    prepared = tmp_path / "prepared"
    write_jsonl(prepared / "sft" / "train.jsonl", [ROW] * 3)
    write_jsonl(prepared / "sft" / "val.jsonl", [ROW])
    write_jsonl(prepared / "dpo" / "train.jsonl", [ROW] * 2)
    (prepared / "dpo" / "val.jsonl").write_text("")  # an empty val split is no val split
    sft = data.resolve("sft", prepared)
    assert (sft.train, sft.val) == (prepared / "sft/train.jsonl", prepared / "sft/val.jsonl")
    dpo = data.resolve("dpo", prepared)
    assert (dpo.train, dpo.val) == (prepared / "dpo/train.jsonl", None)
    files = data.check("sft", sft)
    assert [(f["split"], f["rows"]) for f in files] == [("train", 3), ("val", 1)]
    assert files[0]["sha256"] == file_sha256(prepared / "sft/train.jsonl")
    with pytest.raises(UsageError, match="no dpo/train.jsonl inside"):
        data.resolve("dpo", tmp_path)


@pytest.mark.parametrize("bad, message", [
    ("{not json", ":2: invalid_json"),
    ({"conversations": []}, ":2: no_messages"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, ":2: no_assistant"),
    ({"messages": [{"role": "narrator", "content": "x"}]}, ":2: bad_message: messages\\[0\\]"),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "d.jsonl", [ROW, bad, bad])
    with pytest.raises(UsageError, match=message + r".*\(and 1 more bad rows\)"):
        data.check_file("sft", path)


def test_dpo_rows_need_a_rejected_response(tmp_path):
    no_rejected = {"messages": ROW["messages"]}
    path = write_jsonl(tmp_path / "d.jsonl", [ROW, no_rejected])
    assert data.check_file("sft", path)["rows"] == 2
    with pytest.raises(UsageError, match=r"d.jsonl:2: no_rejected_response"):
        data.check_file("dpo", path)


def test_metrics_and_throughput_from_swift_log(tmp_path):
    rows = [
        {"loss": 2.0, "num_input_tokens_seen": 100, "global_step/max_steps": "1/4", "memory(GiB)": 10.5},
        {"loss": 1.5, "num_input_tokens_seen": 200, "global_step/max_steps": "2/4", "memory(GiB)": 11.0},
        {"eval_loss": 1.7, "global_step/max_steps": "2/4"},
        {"loss": 1.2, "rewards/margins": 0.4, "num_input_tokens_seen": 300, "global_step/max_steps": "4/4"},
        {"eval_loss": 1.8, "global_step/max_steps": "4/4"},
        {"train_runtime": 10.0, "train_samples_per_second": 3.2, "train_loss": 1.6, "num_input_tokens_seen": 300},
    ]
    write_jsonl(tmp_path / "logging.jsonl", rows + ['{"loss": 1.1, "cut sho'])
    parsed = runrecord.log_rows(tmp_path)
    m = runrecord.metrics(parsed)
    assert m["final"]["loss"] == 1.2 and m["final"]["eval_loss"] == 1.8 and m["final"]["step"] == 4
    assert m["final"]["rewards/margins"] == 0.4
    assert m["best"] == {"eval_loss": 1.7, "step": 2}
    t = runrecord.throughput(parsed, start_tokens=100)
    assert t == {"tokens_seen": 300, "tokens_per_s": 20.0, "samples_per_s": 3.2, "peak_memory_gib": 11.0}


def test_checkpoints_and_adapter_path(tmp_path):
    for step in (10, 2, 7):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-99").mkdir()  # still being saved: no trainer_state.json
    assert [p.name for p in runrecord.checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-7", "checkpoint-10"]
    runrecord.write(tmp_path, {"status": "failed", "adapter": None, "command": "gwq-align sft ..."})
    with pytest.raises(UsageError, match="run status is 'failed'.*rerun its command: gwq-align sft"):
        runrecord.adapter_path(tmp_path)
    runrecord.write(tmp_path, {"status": "succeeded", "adapter": "checkpoint-10"})
    assert runrecord.adapter_path(tmp_path) == (tmp_path / "checkpoint-10").resolve()


def test_argv_and_equivalent_swift_command(tmp_path):
    assert train.to_cli({"a": True, "b": False, "c": [1, "x"], "d": None, "e": 5e-5}) == [
        "--a", "true", "--b", "false", "--c", "1", "x", "--e", "5e-05"]
    job = train.Job("dpo", "m", tmp_path, tmp_path / "out", nproc_per_node=2)
    argv, plain = train.commands(job, {"model": "m", "hub_token": "sk-secret", "beta": 0.1})
    assert argv[1:6] == ["-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "gwq_align.swift_entry"]
    # The token reaches ms-swift through its environment, never its argv (so never its args.json).
    assert argv[6:] == ["rlhf", "--model", "m", "--beta", "0.1"]
    assert plain == "NPROC_PER_NODE=2 swift rlhf --model m --hub_token '***' --beta 0.1"
    env = train.child_env(train.models.ModelRef("org/m", local=False), {"hub_token": "sk-secret"})
    assert env["MODELSCOPE_API_TOKEN"] == env["HF_TOKEN"] == "sk-secret"
    assert runrecord.redact({"hub_token": "x", "include_num_input_tokens_seen": True}) == {
        "hub_token": "***", "include_num_input_tokens_seen": True}


def _cuda():
    import torch
    return torch.cuda.is_available()


@pytest.mark.parametrize("device,dropout", [("cpu", 0.0), ("cpu", 0.05),
                                            pytest.param("cuda", 0.0, marks=pytest.mark.skipif("not _cuda()"))])
def test_lora_inputs_stay_bf16_under_autocast_with_the_same_result(monkeypatch, device, dropout):
    """swift_entry's peft patch: same outputs and adapter grads, but no fp32 copy of the activations
    (CPU with dropout keeps the copy: its bf16 dropout rounds the scale). The CUDA case runs on the GPU box;
    with dropout, CUDA draws bf16 masks in another order than fp32 ones, so see the test below for that case."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    from gwq_align import swift_entry

    monkeypatch.setattr(BaseTunerLayer, "_cast_input_dtype", BaseTunerLayer._cast_input_dtype)  # undone after the test
    monkeypatch.delenv("GWQ_PEFT_INPUT_CAST", raising=False)

    def run(patched: bool):
        if patched:
            swift_entry.keep_lora_inputs_in_autocast_dtype()
        torch.manual_seed(0)
        base = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.SiLU(), torch.nn.Linear(96, 32)).to(device, torch.bfloat16)
        model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, lora_dropout=dropout, target_modules=["0", "2"],
                                                init_lora_weights=False))
        seen = []
        for name, module in model.named_modules():
            if name.endswith("lora_A.default"):
                module.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
        x = torch.randn(16, 64, dtype=torch.bfloat16, device=device, requires_grad=True)
        torch.manual_seed(1)  # same dropout masks in both runs
        with torch.autocast(device, dtype=torch.bfloat16):
            out = model(x)
        out.float().square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
        return out.detach(), x.grad.clone(), grads, seen

    out0, xg0, g0, seen0 = run(False)
    out1, xg1, g1, seen1 = run(True)
    kept = torch.float32 if (device == "cpu" and dropout) else torch.bfloat16
    assert seen0 == [torch.float32] * 2 and seen1 == [kept] * 2
    assert torch.equal(out0, out1) and torch.equal(xg0, xg1)
    assert g0.keys() == g1.keys() and all(torch.allclose(g0[k], g1[k], rtol=1e-3, atol=1e-6) for k in g0), \
        {k: (g0[k] - g1[k]).abs().max().item() for k in g0}


def test_lora_input_cast_kept_without_autocast(monkeypatch):
    """No autocast (fp32 CPU runs, eval outside autocast): peft's cast still happens, so dtypes match."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    from gwq_align import swift_entry

    monkeypatch.setattr(BaseTunerLayer, "_cast_input_dtype", BaseTunerLayer._cast_input_dtype)
    monkeypatch.delenv("GWQ_PEFT_INPUT_CAST", raising=False)
    swift_entry.keep_lora_inputs_in_autocast_dtype()
    base = torch.nn.Sequential(torch.nn.Linear(8, 8)).to(torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["0"]))
    assert model(torch.randn(2, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.skipif("not _cuda()")
def test_cuda_bf16_dropout_scales_like_the_fp32_path():
    """Why the patch may apply on CUDA with dropout: a bf16 dropout keeps x * 1/(1-p) rounded once, exactly
    what fp32 dropout followed by autocast's cast to bf16 gives (only which elements drop differs)."""
    import torch

    x = torch.randn(4096, 512, device="cuda", dtype=torch.bfloat16)
    y = torch.nn.functional.dropout(x, p=0.05, training=True)
    kept = y != 0
    assert 0.04 < 1 - kept.float().mean().item() < 0.06
    assert torch.equal(y[kept], (x.float() * (1 / 0.95)).to(torch.bfloat16)[kept])


class _Calls(__import__("torch").overrides.TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("autocast,dropout", [(False, 0.0), (True, 0.0), (True, 0.1)])
def test_lora_output_in_one_gemm_matches_peft(monkeypatch, autocast, dropout):
    """swift_entry's addmm forward: the same outputs and gradients as peft's `result + B(A(x)) * scaling`
    (to bf16 rounding under autocast), with one addmm per adapter instead of a product, a scale and an add."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear

    from gwq_align import swift_entry

    monkeypatch.setattr(Linear, "forward", Linear.forward)  # undone after the test
    monkeypatch.delenv("GWQ_PEFT_PLAIN_FORWARD", raising=False)
    dtype = torch.bfloat16 if autocast else torch.float32

    def run(patched: bool):
        if patched:
            swift_entry.add_lora_output_in_one_gemm()
        torch.manual_seed(0)
        base = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.SiLU(), torch.nn.Linear(96, 32)).to(dtype)
        model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, lora_dropout=dropout, target_modules=["0", "2"],
                                                init_lora_weights=False))
        x = torch.randn(2, 16, 64, dtype=dtype, requires_grad=True)
        torch.manual_seed(1)  # same dropout masks in both runs
        with _Calls() as calls, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        out.float().square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        with model.disable_adapter():  # DPO's reference: the base alone, through peft's own path
            base_out = model(x)
        return out.detach(), x.grad.clone(), grads, calls.names.count("addmm"), base_out.detach()

    out0, xg0, g0, n0, ref0 = run(False)
    out1, xg1, g1, n1, ref1 = run(True)
    assert n1 - n0 == 2  # one per adapted layer
    tol = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-5, atol=1e-6)
    assert torch.allclose(out0.float(), out1.float(), **tol)
    assert torch.allclose(xg0.float(), xg1.float(), **tol)
    assert g0.keys() == g1.keys() and all(torch.allclose(g0[k], g1[k], **tol) for k in g0), \
        {k: (g0[k] - g1[k]).abs().max().item() for k in g0}
    assert torch.equal(ref0, ref1)


def test_lora_output_gemm_leaves_dora_to_peft(monkeypatch):
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear

    from gwq_align import swift_entry

    monkeypatch.setattr(Linear, "forward", Linear.forward)
    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8)), LoraConfig(r=2, target_modules=["0"],
                                                                                    use_dora=True))
    x = torch.randn(3, 8)
    before = model(x)
    swift_entry.add_lora_output_in_one_gemm()
    with _Calls() as calls:
        after = model(x)
    assert torch.equal(before, after) and "addmm" not in calls.names


@pytest.mark.parametrize("keep", [0, 1, 2, 5])
def test_checkpoint_only_the_first_layers(keep):
    """gwq_checkpoint_layers: the first `keep` layers recompute their forward in backward, the rest do not."""
    import torch
    from transformers import Qwen2ForCausalLM

    from gwq_align.swift_entry import checkpoint_only_first
    from gwq_align.tiny import tiny_config

    model = Qwen2ForCausalLM(tiny_config()).train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = model.model.layers
    assert checkpoint_only_first(model, keep) == (min(keep, len(layers)), len(layers))
    calls = [0] * len(layers)
    for i, layer in enumerate(layers):
        layer.self_attn.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
    ids = torch.randint(0, 1000, (1, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    assert calls == [2 if i < keep else 1 for i in range(len(layers))]
