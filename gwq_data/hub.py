"""Publishing to ModelScope: the glue both `gwq-data upload` and `gwq-align push` use.

    upload = Upload(repo="alice/gwq-zh", repo_type="dataset", private=True,
                    files={"sft/train.jsonl": Path("out/sft/train.jsonl"), "README.md": card_text})
    stage(upload, staging_dir)          # exactly the bytes that would be sent (what --dry-run shows)
    publish(upload, token=resolve_token("MODELSCOPE_API_TOKEN"), retries=3)

Everything on the wire goes through the modelscope SDK's `HubApi` (`create_repo`, `get_repo`, `upload_folder`);
this module only orders the calls and turns failures into one line that says what to do. It designs around the
installed SDK (modelscope 1.40.2 over modelscope_hub 0.5.1):

- `upload_folder` would auto-create a missing repo *public*, so the repo is created first with the asked
  visibility, and an existing repo's visibility is checked against `--private` before anything is sent.
- Files are copied into a fresh staging folder, never uploaded from the user's directory, because the SDK
  writes its resume cache (`.ms_upload_cache`) into the uploaded folder. The cache goes to gwq's cache dir
  instead, named after endpoint + repo type + repo + user, so a re-run resumes, a different endpoint starts
  clean, and another account's "already committed" never passes for this one's.
- The SDK's cache says a file is already committed when its (path, mtime, size) match. Staged files get an
  mtime derived from their sha256, so that key changes exactly when the content does: re-running with
  unchanged files sends nothing, and a changed card is always re-sent.
- A wrong token surfaces from `upload_folder` as a retryable `StorageError`. gwq checks the token first
  (`whoami`), reads each failed batch's error from `progress_callback` (403: stop), asks `whoami` again
  before any retry (401: stop), and retries only network and storage failures, a bounded number of times.

What it leaves out: deleting remote files that are no longer local, branches other than master, Studios.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from gwq_data.errors import GwqError, UsageError
from gwq_data.jsonl import file_sha256

TOKEN_HELP = ("create one at https://modelscope.cn/my/myaccesstoken, then `export {env}=...` "
              "(or run `modelscope login --token ...` once)")


@dataclass
class Upload:
    """What to publish where. `files` maps a path in the repo to a local file or to generated text/bytes."""

    repo: str
    repo_type: str  # "dataset" | "model"
    files: dict[str, Path | str | bytes]
    private: bool = False
    license: str = "apache-2.0"
    commit_message: str = "Upload with gwq"
    token_env: str = "MODELSCOPE_API_TOKEN"


@dataclass
class Staged:
    path: str
    size: int
    sha256: str


@dataclass
class Result:
    url: str
    created: bool
    visibility: str
    files: list[Staged] = field(default_factory=list)
    sent_commits: int = 0


def check_repo_id(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise UsageError(f"--repo {repo!r} must be OWNER/NAME, e.g. --repo alice/gwq-zh")
    return owner, name


def endpoint() -> str:
    from modelscope_hub.config import get_default_config

    return get_default_config().endpoint


def repo_url(repo: str, repo_type: str) -> str:
    return f"{endpoint()}/{'datasets' if repo_type == 'dataset' else 'models'}/{repo}"


def resolve_token(token_env: str) -> str | None:
    """The token from `token_env`, else whatever the SDK would use (MODELSCOPE_API_TOKEN, `modelscope login`)."""
    from modelscope_hub.config import get_default_config

    return os.environ.get(token_env) or get_default_config().token or None


def stage(upload: Upload, dest: Path) -> list[Staged]:
    """Write exactly the files that would be uploaded into `dest` (which must be empty or missing)."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise UsageError(f"staging folder {dest} is not empty: pass an empty or new folder")
    staged = []
    for rel, src in sorted(upload.files.items()):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            if not src.is_file():
                raise UsageError(f"{src}: missing; it is needed for {rel} in {upload.repo}")
            shutil.copyfile(src, target)
        else:
            target.write_bytes(src.encode("utf-8") if isinstance(src, str) else src)
        digest = file_sha256(target)
        # A content fingerprint as mtime: the SDK's resume key (path, mtime, size) then changes iff content does.
        stamp = 1_000_000_000 + int(digest[:7], 16)
        os.utime(target, (stamp, stamp))
        staged.append(Staged(rel, target.stat().st_size, digest))
    return staged


def publish(upload: Upload, *, token: str | None, retries: int = 3, quiet: bool = False) -> Result:
    """Create or check the repo, then upload the staged files; re-running finishes an interrupted upload."""
    check_repo_id(upload.repo)
    if not token:
        raise GwqError(f"no ModelScope token: {TOKEN_HELP.format(env=upload.token_env)}")
    with _sdk_quiet():
        # What modelscope.hub.api.HubApi delegates to, without the 3 s import of all of modelscope.
        from modelscope_hub import HubApi

        api = HubApi(token=token)
        with _explained(upload, token):
            user = _whoami(api)
            created, visibility = _create_or_check(api, upload, token)
        tracker = _tracker_path(upload, user)
        if created:
            tracker.unlink(missing_ok=True)  # a recreated repo has none of the files an old cache remembers
        with tempfile.TemporaryDirectory(prefix="gwq-upload-") as tmp:
            staged = stage(upload, Path(tmp) / "repo")
            commits = _upload_with_retries(api, upload, token, Path(tmp) / "repo", tracker, retries, quiet)
    return Result(repo_url(upload.repo, upload.repo_type), created, visibility, staged, commits)


# -- steps -----------------------------------------------------------------

def _create_or_check(api, upload: Upload, token: str) -> tuple[bool, str]:
    from modelscope_hub.constants import Visibility
    from modelscope_hub.errors import AlreadyExistsError, NotExistError, PermissionDeniedError

    wanted = "private" if upload.private else "public"
    owner, _ = check_repo_id(upload.repo)
    created = True
    try:
        api.create_repo(upload.repo, upload.repo_type, visibility=wanted, license=upload.license)
    except AlreadyExistsError:
        created = False
    except NotExistError:
        raise GwqError(f"owner '{owner}' does not exist on {endpoint()} (or this token cannot see it): "
                       f"use your user name or an organisation you belong to in --repo") from None
    try:
        info = api.get_repo(upload.repo, upload.repo_type)
    except (NotExistError, PermissionDeniedError):
        if created:
            raise GwqError(f"{upload.repo} was created but the hub does not show it to this token; "
                           f"check it on {repo_url(upload.repo, upload.repo_type)}") from None
        raise GwqError(f"name clash: {upload.repo_type} {upload.repo} already exists and this token cannot "
                       f"write to it; choose another --repo name") from None
    actual = "private" if info.visibility == Visibility.PRIVATE else "public"
    if upload.private and actual != "private":
        raise GwqError(f"{upload.repo} {'was created' if created else 'already exists'} as a PUBLIC "
                       f"{upload.repo_type}, but --private was asked; nothing was uploaded. Make it private on "
                       f"{repo_url(upload.repo, upload.repo_type)} or choose another --repo")
    return created, actual


def _upload_with_retries(api, upload, token, folder, tracker, retries, quiet) -> int:
    from modelscope_hub.errors import (AuthenticationError, HubError, InvalidParameter,
                                       PermissionDeniedError)

    attempt = 0
    while True:
        attempt += 1
        errors: list[str] = []  # what the SDK's failed batches say; its final StorageError does not

        def on_progress(event: dict) -> None:
            if event.get("error"):
                errors.append(str(event["error"]))

        try:
            with _explained(upload, token), _sdk_report():
                out = api.upload_folder(upload.repo, upload.repo_type, str(folder),
                                        commit_message=upload.commit_message, tracker_path=str(tracker),
                                        use_cache=True, disable_tqdm=quiet or not sys.stderr.isatty(),
                                        progress_callback=on_progress)
            return 0 if out is None else (len(out) if isinstance(out, list) else 1)
        except GwqError as err:
            cause = err.__cause__
            # Auth and bad-request failures will fail the same way again: no retry.
            if isinstance(cause, (AuthenticationError, PermissionDeniedError, InvalidParameter)):
                raise
            if not isinstance(cause, HubError) and not isinstance(cause, (ConnectionError, TimeoutError)):
                raise
            if any("[E3002]" in e or "[403]" in e for e in errors):
                raise GwqError(f"ModelScope refused writes to {upload.repo} (403): this token cannot write to it "
                               f"(a name clash with someone else's repo, or a read-only token); not retried") from cause
            _check_token(api, upload, token)  # a rejected token hides behind StorageError: ask before retrying
            if attempt > retries:
                raise GwqError(f"{err} after {attempt} attempt(s); run the same command again: "
                               f"files already committed are skipped") from cause
            time.sleep(min(2 ** (attempt - 1), 8))


def _check_token(api, upload: Upload, token: str) -> None:
    from modelscope_hub.errors import PermissionDeniedError

    with _explained(upload, token):
        try:
            api.whoami()
        except PermissionDeniedError:
            pass  # scoped tokens may not read the profile; the upload error stands


@contextlib.contextmanager
def _explained(upload: Upload, token: str):
    """Turn the SDK's exceptions into one GwqError line; the token never appears in it."""
    from modelscope_hub.errors import (AlreadyExistsError, AuthenticationError, HubError, InvalidParameter,
                                       NetworkError, PermissionDeniedError, RateLimitError, StorageError)

    ep = endpoint()
    try:
        yield
    except GwqError:
        raise
    except AuthenticationError as e:
        raise GwqError(f"ModelScope at {ep} rejected the token (401): check ${upload.token_env} or run "
                       f"`modelscope login`; not retried") from e
    except PermissionDeniedError as e:
        raise GwqError(f"ModelScope refused access to {upload.repo} (403): the token needs write permission on "
                       f"'{upload.repo.split('/')[0]}' ({_first_line(e, token)})") from e
    except AlreadyExistsError as e:
        raise GwqError(f"name clash: {upload.repo} already exists ({_first_line(e, token)}); "
                       f"choose another --repo name") from e
    except InvalidParameter as e:
        raise UsageError(f"ModelScope rejected the request for {upload.repo}: {_first_line(e, token)}") from e
    except NetworkError as e:
        raise GwqError(f"cannot reach ModelScope at {ep} ({_first_line(e, token)}): check the network or "
                       f"MODELSCOPE_ENDPOINT, then run the same command again") from e
    except (ConnectionError, TimeoutError) as e:
        raise GwqError(f"connection to ModelScope at {ep} failed ({_first_line(e, token)}): "
                       f"run the same command again") from e
    except (StorageError, RateLimitError) as e:
        failed = re.search(r"(\d+) file\(s\) failed to upload.*?uploaded (\d+) file", str(e), re.S)
        what = (f"{failed.group(1)} of {int(failed.group(1)) + int(failed.group(2))} files failed" if failed
                else _first_line(e, token))
        raise GwqError(f"upload to {upload.repo} did not finish: {what}") from e
    except HubError as e:
        raise GwqError(f"ModelScope error for {upload.repo}: {_first_line(e, token)}") from e


def _first_line(exc: BaseException, token: str) -> str:
    """The gist of an SDK error: its first line, or for connection errors just the OS reason."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno:
        text = errno.group(0)
    elif len(text) > 160:
        text = text[:157] + "..."
    return text.replace(token, "***") if token else text


def _whoami(api) -> str:
    """The token's user name: checks the token before anything is staged, and keys the resume cache."""
    from modelscope_hub.errors import PermissionDeniedError

    try:
        return api.whoami().username or ""
    except PermissionDeniedError:
        return ""  # a scoped token may not read the profile; create_repo will tell whether it can write


def _tracker_path(upload: Upload, user: str) -> Path:
    """Resume state outside the uploaded tree, named after what it describes. The user is part of the key:
    another account's "already committed" must not let an upload without write access pass as done."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gwq" / "hub"
    key = hashlib.sha256(f"{endpoint()}|{upload.repo_type}|{upload.repo}|{user}".encode()).hexdigest()[:16]
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{upload.repo_type}-{upload.repo.replace('/', '__')}-{key}.json"




@contextlib.contextmanager
def _sdk_report():
    """The SDK print()s an "Upload Report" table; show it on stderr after a success, drop it after a failure
    (gwq's one-line error says what matters), and keep stdout for gwq's own summary."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    sys.stderr.write(buf.getvalue())


@contextlib.contextmanager
def _sdk_quiet():
    """The SDK logs every step at INFO and each failed file as a multi-line ERROR; gwq reports failures in one
    line of its own, so the SDK's logs are off unless MODELSCOPE_LOG_LEVEL asks for them."""
    import modelscope_hub  # noqa: F401  (configures the SDK loggers, which we then turn down)

    if os.environ.get("MODELSCOPE_LOG_LEVEL"):
        yield
        return
    loggers = [logging.getLogger(n) for n in ("modelscope_hub", "modelscope")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
