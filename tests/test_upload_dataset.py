"""gwq-data upload against a real HTTP hub on 127.0.0.1 (tests/modelscope_server.py), driven through the
real modelscope SDK in a subprocess per run, the way a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DATA, REPO, gwq_cmd
from modelscope_server import HubServer

TOKEN = "ms-test-0f9e8d7c6b5a-secret"
FIXTURE = REPO / "tests" / "data" / "upload_prepared"
GOLDEN = REPO / "tests" / "golden" / "upload"
# Make the SDK give up on a dropped blob PUT at once (one attempt, one plain retry round, no progressive
# recovery with its multi-second backoff), so gwq's own handling is what the tests see.
FAST = {"MODELSCOPE_UPLOAD_BLOB_MAX_ATTEMPTS": "1", "MODELSCOPE_UPLOAD_RECOVERY_ENABLED": "false",
        "MODELSCOPE_UPLOAD_FAILED_FILE_MAX_RETRY_ROUNDS": "1"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A real `gwq-data prepare` output on the sample dialogues."""
    out = tmp_path_factory.mktemp("prepared") / "out"
    subprocess.run(gwq_cmd("gwq-data") + ["prepare", str(DATA / "sample" / "dialogues.jsonl"), "--out-dir", str(out),
                                          "--val-ratio", "0.2"], check=True, capture_output=True)
    return out


@pytest.fixture
def hub():
    with HubServer({TOKEN: "alice", "ms-bob-token": "bob"}) as server:
        server.state.orgs["gwq-org"] = {"alice"}
        yield server


def upload(hub, *args, token: str | None = TOKEN, env: dict | None = None) -> subprocess.CompletedProcess:
    run_env = dict(os.environ, MODELSCOPE_ENDPOINT=hub.url, COLUMNS="400")
    run_env.pop("MODELSCOPE_API_TOKEN", None)
    if token is not None:
        run_env["MODELSCOPE_API_TOKEN"] = token
    run_env.update(env or {})
    return subprocess.run(gwq_cmd("gwq-data") + ["upload", *map(str, args)], env=run_env,
                          capture_output=True, text=True, timeout=120)


def expected_files(prepared: Path, card: str) -> dict[str, bytes]:
    files = {p: (prepared / p).read_bytes() for p in ("sft/train.jsonl", "sft/val.jsonl", "dpo/train.jsonl", "dpo/val.jsonl")}
    # stats.json goes out with input files named, not located: no local paths on a public hub.
    stats = json.loads((prepared / "stats.json").read_text("utf-8"))
    for item in stats["inputs"]:
        item["path"] = Path(item["path"]).name
        assert "/" not in item["path"]
    files["stats.json"] = (json.dumps(stats, ensure_ascii=False, indent=2) + "\n").encode()
    files["README.md"] = card.encode()
    return files


def assert_no_secret(*texts: str, roots: tuple[Path, ...] = ()) -> None:
    for text in texts:
        assert TOKEN not in text
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and "credentials" not in path.parts:  # the SDK's own `modelscope login` store
                assert TOKEN.encode() not in path.read_bytes(), path


def test_help():
    out = subprocess.run(gwq_cmd("gwq-data") + ["upload", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--dry-run" in out.stdout and "Example:" in out.stdout


def test_upload_sends_every_byte_private_with_a_loadable_card(hub, prepared, tmp_path, isolated_home):
    from gwq_data.card import dataset_card

    before = sorted(p.name for p in prepared.rglob("*"))
    res = upload(hub, prepared, "--repo", "alice/gwq-zh", "--private")
    assert res.returncode == 0, res.stderr
    repo = hub.state.repos[("datasets", "alice/gwq-zh")]
    assert repo.private and repo.license == "apache-2.0"
    card = dataset_card(prepared, repo="alice/gwq-zh")
    assert hub.state.files("datasets", "alice/gwq-zh") == expected_files(prepared, card)
    # The SDK's resume cache never lands in the user's directory; nothing else does either.
    assert sorted(p.name for p in prepared.rglob("*")) == before
    assert_no_secret(res.stdout, res.stderr, roots=(prepared, isolated_home))
    assert "alice/gwq-zh" in res.stdout and "private" in res.stdout

    # The card as ModelScope / `datasets` read it: front matter, configs, and the splits it points at load.
    local = tmp_path / "clone"
    for rel, data in hub.state.files("datasets", "alice/gwq-zh").items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    from datasets import load_dataset
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    meta = DatasetCard.load(local / "README.md").data
    assert meta.license == "apache-2.0" and meta.language == ["zh"]
    configs = MetadataConfigs.from_dataset_card_data(meta)
    assert set(configs) == {"default", "dpo"}
    sft = load_dataset(str(local), cache_dir=str(tmp_path / "hf"))
    counts = json.loads((prepared / "stats.json").read_text())["counts"]
    assert (sft["train"].num_rows, sft["validation"].num_rows) == (counts["sft_train"], counts["sft_val"])
    dpo = load_dataset(str(local), "dpo", cache_dir=str(tmp_path / "hf"))
    assert "rejected_response" in dpo["train"].column_names


def test_rerun_with_unchanged_files_sends_nothing(hub, prepared):
    assert upload(hub, prepared, "--repo", "alice/gwq-zh").returncode == 0
    puts, commits = hub.state.count("PUT", "/blobs/"), hub.state.count("POST", "/commit/")
    assert puts >= 4 and commits == 1  # the four .jsonl splits go through pre-signed blob PUTs
    again = upload(hub, prepared, "--repo", "alice/gwq-zh")
    assert again.returncode == 0, again.stderr
    assert hub.state.count("PUT", "/blobs/") == puts and hub.state.count("POST", "/commit/") == commits
    assert "0 commit(s)" in again.stdout


def test_wrong_token_is_one_line_and_not_retried(hub, prepared):
    res = upload(hub, prepared, "--repo", "alice/gwq-zh", token="ms-wrong-" + TOKEN)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rejected the token (401)" in lines[0], res.stderr
    # One request, the token check up front; nothing created, nothing retried.
    assert [(r["path"], r["status"]) for r in hub.state.log] == [("/openapi/v1/users/me", 401)] and not hub.state.repos
    assert_no_secret(res.stdout, res.stderr)


def test_token_revoked_during_upload_is_reported_as_auth_and_not_retried(hub, prepared):
    # create_repo succeeds, then upload_folder meets 401s, which the SDK reports as a retryable StorageError.
    hub.state.revoke_on_upload = True
    res = upload(hub, prepared, "--repo", "alice/revoked", "--retries", "3", env=FAST)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rejected the token (401)" in lines[0] and "not retried" in lines[0], res.stderr
    paths = [r["path"] for r in hub.state.log]
    # After the failed upload gwq asked the hub whose token it is (users/me → 401) instead of retrying.
    probe = len(paths) - 1 - paths[::-1].index("/openapi/v1/users/me")
    assert hub.state.log[probe]["status"] == 401 and any("/repos/" in p for p in paths[:probe])
    assert not any("/repos/" in p or p.startswith("/blobs/") for p in paths[probe:])
    assert_no_secret(res.stdout, res.stderr)


def test_no_token_says_how_to_get_one(hub, prepared):
    res = upload(hub, prepared, "--repo", "alice/gwq-zh", token=None)
    assert res.returncode == 1 and "no ModelScope token" in res.stderr and "MODELSCOPE_API_TOKEN" in res.stderr
    assert hub.state.log == []


def test_sdk_login_credentials_are_used_and_token_env_is_honoured(hub, prepared, isolated_home):
    env = dict(os.environ, MODELSCOPE_ENDPOINT=hub.url)
    env.pop("MODELSCOPE_API_TOKEN", None)
    login = f"from modelscope_hub import HubApi; HubApi().login({TOKEN!r})"  # as `modelscope login` does
    subprocess.run([sys.executable, "-c", login], env=env, check=True,
                   capture_output=True)
    res = upload(hub, prepared, "--repo", "alice/by-login", token=None)
    assert res.returncode == 0, res.stderr
    res = upload(hub, prepared, "--repo", "bob/by-env", "--token-env", "BOB_TOKEN", token=None,
                 env={"BOB_TOKEN": "ms-bob-token"})
    assert res.returncode == 0, res.stderr
    assert ("datasets", "bob/by-env") in hub.state.repos
    assert_no_secret(res.stdout, res.stderr, roots=(prepared,))


def test_name_clash_missing_owner_and_public_repo_with_private_flag(hub, prepared):
    assert upload(hub, prepared, "--repo", "bob/taken", "--private", token="ms-bob-token").returncode == 0
    clash = upload(hub, prepared, "--repo", "bob/taken")
    assert clash.returncode == 1 and "name clash" in clash.stderr and "bob/taken" in clash.stderr

    # Someone else's public repo: visible, so the clash only shows when the hub refuses the writes.
    assert upload(hub, prepared, "--repo", "bob/public", token="ms-bob-token").returncode == 0
    public = upload(hub, prepared, "--repo", "bob/public", env=FAST)
    assert public.returncode == 1 and "refused writes to bob/public (403)" in public.stderr
    assert "not retried" in public.stderr and hub.state.files("datasets", "bob/public")

    owner = upload(hub, prepared, "--repo", "nobody/data")
    assert owner.returncode == 1 and "owner 'nobody' does not exist" in owner.stderr

    assert upload(hub, prepared, "--repo", "alice/open").returncode == 0
    commits = hub.state.count("POST", "/commit/")
    private = upload(hub, prepared, "--repo", "alice/open", "--private")
    assert private.returncode == 1 and "PUBLIC" in private.stderr and "--private" in private.stderr
    assert hub.state.count("POST", "/commit/") == commits  # nothing sent

    assert upload(hub, prepared, "--repo", "gwq-org/shared", "--private").returncode == 0
    assert hub.state.repos[("datasets", "gwq-org/shared")].private

    denied = upload(hub, prepared, "--repo", "gwq-org/bobs", token="ms-bob-token")
    assert denied.returncode == 1 and "refused access to gwq-org/bobs (403)" in denied.stderr

    bad = upload(hub, prepared, "--repo", "no-slash")
    assert bad.returncode == 2 and "OWNER/NAME" in bad.stderr


def test_dropped_connection_then_rerun_finishes(hub, prepared):
    # gwq's own retry off: the first run must fail.
    hub.state.drop_puts = 100
    res = upload(hub, prepared, "--repo", "alice/flaky", "--retries", "0", env=FAST)
    assert res.returncode == 1, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "did not finish" in lines[0] and "run the same command again" in lines[0]
    assert hub.state.count("PUT", "/blobs/") == 0 and hub.state.count("PUT", "/blobs/", "dropped") > 0
    # Small files went inline in a commit; none of the .jsonl splits (blobs) made it.
    assert not any(p.endswith(".jsonl") for p in hub.state.files("datasets", "alice/flaky"))
    assert_no_secret(res.stdout, res.stderr)

    hub.state.drop_puts = 0
    again = upload(hub, prepared, "--repo", "alice/flaky", env=FAST)
    assert again.returncode == 0, again.stderr
    from gwq_data.card import dataset_card

    assert hub.state.files("datasets", "alice/flaky") == expected_files(prepared,
                                                                      dataset_card(prepared, repo="alice/flaky"))


def test_dropped_puts_beyond_the_sdk_retries_are_retried_by_gwq(hub, prepared):
    # The SDK's own pass and its one retry round both lose this blob; gwq's second attempt delivers it.
    import hashlib

    sha = hashlib.sha256((prepared / "sft" / "val.jsonl").read_bytes()).hexdigest()
    hub.state.drop_blob[sha] = 2
    res = upload(hub, prepared, "--repo", "alice/once", "--retries", "2", env=FAST)
    assert res.returncode == 0, res.stderr
    assert hub.state.count("PUT", sha, "dropped") == 2 and hub.state.count("PUT", sha) == 1
    assert hub.state.count("GET", "/users/me") == 2  # the up-front check and the probe before the retry
    from gwq_data.card import dataset_card

    assert hub.state.files("datasets", "alice/once") == expected_files(prepared,
                                                                     dataset_card(prepared, repo="alice/once"))


def test_dry_run_sends_nothing_and_stages_exactly_the_upload(hub, prepared, tmp_path):
    staging = tmp_path / "staging"
    res = upload(hub, prepared, "--repo", "alice/gwq-zh", "--dry-run", "--staging", staging, token=None)
    assert res.returncode == 0, res.stderr
    assert hub.state.log == []
    from gwq_data.card import dataset_card

    card = dataset_card(prepared, repo="alice/gwq-zh")
    staged = {str(p.relative_to(staging)): p.read_bytes() for p in staging.rglob("*") if p.is_file()}
    assert staged == expected_files(prepared, card)
    assert card.splitlines()[0] == "---" and "configs:" in res.stdout and "README.md" in res.stdout
    again = upload(hub, prepared, "--repo", "alice/gwq-zh", "--dry-run", "--staging", staging, token=None)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_card_without_dpo_pairs(tmp_path):
    from gwq_data.card import dataset_card, dataset_files

    prepared = tmp_path / "prepared"
    shutil.copytree(FIXTURE, prepared)
    for p in (prepared / "dpo").iterdir():
        p.write_text("")
    assert sorted(dataset_files(prepared)) == ["sft/train.jsonl", "sft/val.jsonl", "stats.json"]
    card = dataset_card(prepared, repo="alice/sft-only")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert [c["config_name"] for c in meta["configs"]] == ["default"]
    assert "rlhf" not in card and "gwq-align dpo" not in card


def test_card_golden(tmp_path):
    """The card for a fixed prepared dir, byte for byte (set GWQ_UPDATE_GOLDEN=1 to rewrite)."""
    from gwq_data.card import dataset_card

    card = dataset_card(FIXTURE, repo="alice/gwq-zh", license="mit")
    golden = GOLDEN / "dataset_card.md"
    if os.environ.get("GWQ_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(card, encoding="utf-8")
    assert card == golden.read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "mit" and meta["size_categories"] == ["n<1K"]
    assert "/home/someone" not in card  # local paths stay local


def test_missing_or_empty_prepared_dir(hub, tmp_path):
    res = upload(hub, tmp_path / "nope", "--repo", "alice/x")
    assert res.returncode == 2 and "not a directory" in res.stderr
    empty = tmp_path / "empty"
    shutil.copytree(FIXTURE, empty)
    for p in (empty / "sft").iterdir():
        p.write_text("")
    res = upload(hub, empty, "--repo", "alice/x")
    assert res.returncode == 2 and "sft/train.jsonl" in res.stderr
    assert hub.state.log == []


def test_unreachable_hub_is_one_line(prepared):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MODELSCOPE_ENDPOINT=f"http://127.0.0.1:{port}", MODELSCOPE_API_TOKEN=TOKEN, COLUMNS="400",
               MODELSCOPE_API_MAX_RETRIES="1")  # the SDK's own connect retries would only add backoff time
    res = subprocess.run(gwq_cmd("gwq-data") + ["upload", str(prepared), "--repo", "alice/x"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot reach ModelScope" in lines[0] and TOKEN not in res.stderr
