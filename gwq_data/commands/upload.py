"""gwq-data upload: publish a prepared dataset to the ModelScope dataset hub with a generated card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gwq_data.console import cli_errors, console, print_table, summary_table


@cli_errors
def main(
    prepared: Path = typer.Argument(..., help="Directory written by `gwq-data prepare --out-dir`."),
    repo: str = typer.Option(..., "--repo", help="Dataset repo on ModelScope, OWNER/NAME (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private; refuse to upload into a public one."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write what would be uploaded to a staging folder; send nothing."),
    staging: Optional[Path] = typer.Option(None, "--staging", help="Staging folder for --dry-run (default: a new temp folder)."),
    token_env: str = typer.Option("MODELSCOPE_API_TOKEN", "--token-env", help="Environment variable holding the token; "
                                  "without it, the SDK's own `modelscope login` credentials are used."),
    license: str = typer.Option("apache-2.0", "--license", help="License id for the repo and the card."),
    retries: int = typer.Option(3, "--retries", min=0, help="Re-runs of the upload after a network failure."),
):
    """Upload the SFT/DPO splits, stats.json and a README.md dataset card to ModelScope.

    The token is read from the environment and never printed or written. Re-running after a failure
    finishes the job; unchanged files are not sent again.

    Example: MODELSCOPE_API_TOKEN=ms-... gwq-data upload out/prepared --repo alice/gwq-zh --private
    """
    from gwq_data import hub
    from gwq_data.card import dataset_card, dataset_files

    hub.check_repo_id(repo)
    license = license.lower()  # card front matter wants the lowercase SPDX-style id (apache-2.0, mit, cc-by-4.0)
    if not prepared.is_dir():
        from gwq_data.errors import UsageError

        raise UsageError(f"{prepared}: not a directory; pass the --out-dir of `gwq-data prepare`")
    files: dict = dict(dataset_files(prepared))
    files["README.md"] = dataset_card(prepared, repo=repo, license=license)
    upload = hub.Upload(repo=repo, repo_type="dataset", files=files, private=private, license=license,
                        commit_message=f"gwq-data upload {prepared.name}", token_env=token_env)
    report(upload, dry_run=dry_run, staging=staging, retries=retries)


def report(upload, *, dry_run: bool, staging: Optional[Path], retries: int) -> None:
    """Stage (dry run) or publish, then print the file table; shared with `gwq-align push`."""
    import tempfile

    from gwq_data import hub

    if dry_run:
        dest = staging or Path(tempfile.mkdtemp(prefix="gwq-staging-"))
        staged = hub.stage(upload, dest)
        console.print(f"dry run: nothing sent; {len(staged)} files staged in {dest}", highlight=False)
        _files_table(f"would upload to {upload.repo_type} {upload.repo}", staged)
        card = (dest / "README.md").read_text(encoding="utf-8")
        print(card)
        return
    result = hub.publish(upload, token=hub.resolve_token(upload.token_env), retries=retries)
    _files_table(f"{upload.repo_type} {upload.repo}", result.files)
    # stdout, one line: what a script wants to capture.
    print(f"published {result.url} ({result.visibility}, {'created' if result.created else 'existing'} repo, "
          f"{result.sent_commits} commit(s) sent)")


def _files_table(title: str, staged) -> None:
    rows = [(s.path, s.size, s.sha256[:12]) for s in staged]
    print_table(summary_table(title, rows, columns=("file", "bytes", "sha256")))
