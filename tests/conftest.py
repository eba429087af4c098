"""Test-wide setup: every user path goes to a temp dir and nothing may reach a hub."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

# Set before any test module imports transformers/modelscope/swift, which read them once.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MODELSCOPE_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
}
os.environ.update(OFFLINE)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Redirect HOME and every cache a library might write to, so tests never touch the user's."""
    home = tmp_path_factory.mktemp("home")
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "MODELSCOPE_HOME", "MODELSCOPE_CACHE"):
        monkeypatch.setenv(var, str(home / var.lower()))
    for var in ("OPENAI_API_KEY", "MODELSCOPE_API_TOKEN", "DASHSCOPE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield home


def gwq_cmd(tool: str) -> list[str]:
    """The installed console script, run through this interpreter's venv."""
    return [str(Path(sys.executable).parent / tool)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2 chat model (real Qwen2 vocabulary), built once per test session."""
    from gwq_align.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2") / "model")
