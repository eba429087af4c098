"""gwq-align push: publish a run's adapter (or merged model) to the ModelScope model hub with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gwq_data.console import cli_errors, console


@cli_errors
def main(
    run_dir: Path = typer.Argument(..., help="Run directory of `gwq-align sft` or `gwq-align dpo` (holds gwq_run.json)."),
    repo: str = typer.Option(..., "--repo", help="Model repo on ModelScope, OWNER/NAME (created if missing)."),
    merge: bool = typer.Option(False, "--merge", help="Upload the LoRA merged into the base weights instead of the adapter."),
    private: bool = typer.Option(False, "--private", help="Create the repo private; refuse to upload into a public one."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write what would be uploaded to a staging folder; send nothing."),
    staging: Optional[Path] = typer.Option(None, "--staging", help="Staging folder for --dry-run (default: a new temp folder)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="ModelScope dataset OWNER/NAME the run trained on, "
                                          "linked from the card."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Hub id of the base model for the card and "
                                             "adapter_config.json (default: the run's base_model)."),
    base_path: Optional[str] = typer.Option(None, "--base-path", help="Local copy of the base model for --merge "
                                            "(default: the run's base_model)."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="A `gwq-align compare` report whose first table goes "
                                           "in the card (default: compare.md or compare/report.md in the run dir)."),
    token_env: str = typer.Option("MODELSCOPE_API_TOKEN", "--token-env", help="Environment variable holding the token; "
                                  "without it, the SDK's own `modelscope login` credentials are used."),
    license: str = typer.Option("apache-2.0", "--license", help="License id for the repo and the card."),
    retries: int = typer.Option(3, "--retries", min=0, help="Re-runs of the upload after a network failure."),
):
    """Upload the final adapter (or, with --merge, the merged model), a README.md model card and configuration.json.

    The card gives the base model, the exact gwq and swift training commands, the dataset, hyperparameters,
    final metrics and the compare report's headline table. The token is never printed or written.

    Example: gwq-align push runs/sft --repo alice/qwen2.5-0.5b-guwen --dataset alice/gwq-zh --private
    """
    import tempfile

    from gwq_align import push
    from gwq_align.model_card import configuration, find_compare_report, model_card, read_run
    from gwq_data import hub
    from gwq_data.commands.upload import report
    from gwq_data.errors import UsageError

    hub.check_repo_id(repo)
    license = license.lower()  # card front matter wants the lowercase SPDX-style id (apache-2.0, mit, cc-by-4.0)
    if dataset:
        hub.check_repo_id(dataset)
    record = read_run(run_dir)
    base = base_model or str(record.get("base_model") or "")
    if not base:
        raise UsageError(f"{run_dir}: gwq_run.json names no base_model; pass --base-model OWNER/NAME")
    if Path(base).exists() and not base_model:
        console.print(f"[yellow]warning:[/] the run's base_model is a local path ({base}); pass --base-model "
                      f"OWNER/NAME so the card and adapter_config.json name a model others can download",
                      highlight=False)
    if compare is not None and not compare.is_file():
        raise UsageError(f"--compare {compare}: no such file")
    with tempfile.TemporaryDirectory(prefix="gwq-merge-") as tmp:
        if merge:
            console.print(f"merging {record['adapter']} into {base_path or record.get('base_model')} ...", highlight=False)
            files: dict = dict(push.merged_files(run_dir, record, out=Path(tmp) / "merged", base_path=base_path))
        else:
            files = dict(push.adapter_files(run_dir, record, base_model=base))
        files["configuration.json"] = configuration()
        files["README.md"] = model_card(record, repo=repo, merged=merge, base_model=base, dataset=dataset,
                                        compare=compare or find_compare_report(run_dir), license=license,
                                        site=hub.endpoint())
        upload = hub.Upload(repo=repo, repo_type="model", files=files, private=private, license=license,
                            commit_message=f"gwq-align push {run_dir.name}{' (merged)' if merge else ''}",
                            token_env=token_env)
        report(upload, dry_run=dry_run, staging=staging, retries=retries)
