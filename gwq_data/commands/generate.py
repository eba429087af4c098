"""gwq-data generate: restyle (or synthesize) dialogues through any OpenAI-compatible API."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gwq_data.console import cli_errors, console, print_table, summary_table

MODES = ("rewrite", "synthesize")


@cli_errors
def main(
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Plain dialogues (any format validate accepts). Rewrite mode."),
    out: Path = typer.Option(..., "--out", "-o", help="Styled canonical records are appended here (JSONL)."),
    model: str = typer.Option(..., "--model", "-m", help="Model name as the server knows it (gpt-4o-mini, qwen-plus, deepseek-chat...)."),
    base_url: str = typer.Option("https://api.openai.com/v1", help="OpenAI-compatible endpoint, usually ending in /v1."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the API key (never a flag)."),
    prompt: Optional[str] = typer.Option(None, help="Prompt YAML path or name in prompts/ [default: translation_tone, or synthesize]."),
    mode: str = typer.Option("rewrite", help="rewrite: restyle each input dialogue; synthesize: write new ones on --topics."),
    topics: Optional[Path] = typer.Option(None, help="Synthesize: topics, one per line (or JSONL with \"topic\")."),
    num: int = typer.Option(10, min=1, help="Synthesize: number of dialogues, spread round-robin over the topics."),
    turns: int = typer.Option(2, min=1, help="Synthesize: user/assistant rounds per dialogue."),
    concurrency: int = typer.Option(16, min=1, help="Requests in flight at once."),
    rpm: Optional[int] = typer.Option(None, min=1, help="Requests per minute limit."),
    tpm: Optional[int] = typer.Option(None, min=1, help="Tokens per minute limit (estimated before sending)."),
    max_requests: Optional[int] = typer.Option(None, min=0, help="Stop cleanly after sending this many requests (cache hits are free)."),
    max_cost: Optional[float] = typer.Option(None, min=0, help="Stop cleanly once this much is spent (needs --price-in/--price-out)."),
    price_in: float = typer.Option(0.0, min=0, help="Price per 1M prompt tokens, for cost accounting."),
    price_out: float = typer.Option(0.0, min=0, help="Price per 1M completion tokens."),
    temperature: float = typer.Option(0.7, help="Sampling temperature."),
    seed: Optional[int] = typer.Option(None, help="Sampling seed, where the server supports it."),
    max_tokens: Optional[int] = typer.Option(None, min=1, help="Completion token limit per request [default: the server's]."),
    limit: Optional[int] = typer.Option(None, min=0, help="Only the first N input rows."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the first rendered prompt and the estimated tokens/cost; send nothing."),
    rejects: Optional[Path] = typer.Option(None, help="Rejected rows with reasons [default: OUT with .rejects.jsonl]."),
    cache: Optional[Path] = typer.Option(None, help="Response journal [default: OUT with .cache.sqlite]."),
    timeout: float = typer.Option(120.0, min=0.1, help="Seconds per request before it counts as a timeout."),
    retries: int = typer.Option(4, min=0, help="HTTP retries per request on 429/5xx/timeouts (the SDK's, with backoff and jitter)."),
    max_attempts: int = typer.Option(3, min=1, help="Hard cap on requests per row (re-asks after bad JSON included)."),
    json_mode: bool = typer.Option(True, help="Ask for response_format=json_object (dropped automatically where unsupported)."),
    retry_reasons: str = typer.Option("", help="Comma list of reject reasons to try again on this run (e.g. api_error,bad_json)."),
    min_tone: float = typer.Option(0.5, help="Gate: lowest tone score (gwq_data.tone) a styled reply may have."),
    min_overlap: float = typer.Option(0.4, help="Gate: lowest char ROUGE-L recall of the original."),
    min_ratio: float = typer.Option(0.8, help="Gate: styled length ≥ this × original."),
    max_ratio: float = typer.Option(4.0, help="Gate: styled length ≤ this × original + 150 chars."),
    max_input_tokens: int = typer.Option(1024, help="Input dialogues longer than this (Qwen tokens) are rejected."),
):
    """Restyle every assistant reply into 古文翻译腔, keeping the plain one as `original`; resumable.

    Exit 0 when every row was styled, 1 when some were rejected or the run stopped
    at a budget (re-run the same command to continue), 2 on usage errors.

    Example: gwq-data generate --input data/sample/dialogues.jsonl --out out/styled.jsonl --model qwen-plus --base-url https://dashscope.aliyuncs.com/compatible-mode/v1 --api-key-env DASHSCOPE_API_KEY
    """
    import asyncio

    from gwq_data.errors import GwqError, UsageError
    from gwq_data.generate.client import ClientConfig
    from gwq_data.generate.gate import GateConfig
    from gwq_data.generate.prompt import load_prompt
    from gwq_data.generate.run import RunConfig, Runner, rewrite_jobs, synthesize_jobs

    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
        # Never echo it: people paste the key itself here.
        raise UsageError("--api-key-env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                         "not the key itself; export the key and pass its variable name")
    if input is not None:
        from gwq_data.load import refuse_overwriting_inputs
        refuse_overwriting_inputs([input], out, rejects or out.with_suffix(".rejects.jsonl"), cache)
    if mode not in MODES:
        raise UsageError(f"--mode {mode}: choose rewrite or synthesize")
    if max_cost is not None and not (price_in or price_out):
        raise UsageError("--max-cost needs --price-in and --price-out (per 1M tokens) to know what is spent")
    p = load_prompt(prompt or ("translation_tone" if mode == "rewrite" else "synthesize"))
    if p.mode != mode:
        raise UsageError(f"--prompt {p.path} is a {p.mode} prompt; use it with --mode {p.mode}")
    if mode == "rewrite":
        if input is None:
            raise UsageError("rewrite mode needs --input FILE (or use --mode synthesize --topics FILE)")
        jobs, bad = rewrite_jobs(input, limit, max_input_tokens)
    else:
        if topics is None:
            raise UsageError("synthesize mode needs --topics FILE")
        jobs, bad = synthesize_jobs(topics, num if limit is None else min(num, limit), turns), []

    params = {"temperature": temperature, "seed": seed, "max_tokens": max_tokens}
    if dry_run:
        return _dry_run(p, _not_done(jobs, out, rejects or out.with_suffix(".rejects.jsonl")), bad, params, price_in, price_out)
    cfg = RunConfig(
        out=out, rejects=rejects or out.with_suffix(".rejects.jsonl"), cache=cache or out.with_suffix(".cache.sqlite"),
        client=ClientConfig(base_url=base_url.rstrip("/"), model=model, api_key_env=api_key_env, timeout=timeout,
                            retries=retries, concurrency=concurrency, rpm=rpm, tpm=tpm, json_mode=json_mode, params=params),
        gate=GateConfig(min_tone=min_tone, min_overlap=min_overlap, min_ratio=min_ratio, max_ratio=max_ratio),
        max_attempts=max_attempts, max_requests=max_requests, max_cost=max_cost, price_in=price_in, price_out=price_out,
        retry_reasons=tuple(r.strip() for r in retry_reasons.split(",") if r.strip()))
    with _progress() as bar:
        s = asyncio.run(Runner(cfg, p, bar).run(jobs, bad))
    _summary(s, cfg, p)
    if s.fatal:
        raise GwqError(f"{s.fatal} ({s.done}/{s.total} rows finished and kept)")
    if s.stopped:
        console.print(f"[yellow]stopped[/]: {s.stopped}; {s.done}/{s.total} rows finished. Run the same command again "
                      "(with a higher limit) to continue: finished responses are cached and are not paid for again.",
                      highlight=False)
        raise typer.Exit(1)
    if s.rejected_total:
        console.print(f"{s.rejected_total} of {s.total} rows rejected: reasons in {cfg.rejects}", highlight=False)
        raise typer.Exit(1)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                    disable=not console.is_terminal)


def _summary(s, cfg, p) -> None:
    import time

    wall = time.monotonic() - s.started
    rows = [("rows", s.total), ("  already done (resumed)", s.resumed)]
    if s.retried:
        rows.append(("  earlier rejects retried", s.retried))
    rows += [("  styled", s.styled),
            ("  rejected", sum(s.rejects.values()))]
    rows += [(f"    {k}", v) for k, v in s.rejects.most_common()]
    rows += [("requests sent", s.requests), ("  replayed from cache", s.cached), ("  re-asks after bad answers", s.reasks),
             ("  HTTP errors retried", s.http_errors), ("prompt tokens", f"{s.prompt_tokens:,}"),
             ("completion tokens", f"{s.completion_tokens:,}")]
    if cfg.price_in or cfg.price_out:
        rows.append(("cost", f"{s.cost:.4f}"))
    rows += [("wall seconds", f"{wall:.1f}"), ("requests/s", f"{s.requests / max(wall, 1e-6):.1f}")]
    print_table(summary_table(f"gwq-data generate · {cfg.client.model} · {p.ref}", rows))
    console.print(f"out: {cfg.out}  rejects: {cfg.rejects}  cache: {cfg.cache}", highlight=False)


def _not_done(jobs, out: Path, rejects: Path) -> list:
    """Jobs a real run would still send: rows already in OUT or the rejects file are skipped (read-only)."""
    from gwq_data.generate.run import out_key, reject_key
    from gwq_data.jsonl import Row, read_rows

    done = set()
    for path, key in ((out, out_key), (rejects, reject_key)):
        if path.exists():
            done |= {key(r.data) for r in read_rows(path) if isinstance(r, Row) and isinstance(r.data, dict)}
    return [j for j in jobs if j.key not in done]


def _dry_run(p, jobs, bad, params, price_in, price_out) -> None:
    from gwq_data.tokens import count_tokens, method

    if not jobs:
        console.print("nothing to send: every valid input row is already done", highlight=False)
        return
    first = jobs[0]
    msgs = p.rewrite_messages(first.record) if first.record is not None else p.synthesize_messages(first.topic, first.turns, first.index)
    for m in msgs:
        typer.echo(f"--- {m['role']} ---\n{m['content']}")
    prefix = sum(count_tokens(m["content"]) + 4 for m in msgs[:-1])
    prompt_tokens = completion = 0
    for j in jobs:
        if j.record is not None:
            prompt_tokens += prefix + count_tokens(p.rewrite_task(j.record["messages"])) + 4
            plain = [m.get("original") or m["content"] for m in j.record["messages"] if m["role"] == "assistant"]
            # A styled reply runs ~2.5× the plain one, plus the JSON wrapper.
            completion += int(2.5 * sum(count_tokens(x) for x in plain)) + 10 * len(plain) + 10
        else:
            prompt_tokens += prefix + count_tokens(p.synthesize_task(j.topic, j.turns, j.index)) + 4
            completion += 250 * j.turns
    rows = [("rows to send", len(jobs)), ("invalid input rows (rejected)", len(bad)),
            ("prompt tokens (est.)", f"{prompt_tokens:,}"), ("completion tokens (est.)", f"{completion:,}"),
            ("token counts", method())]
    if price_in or price_out:
        rows.append(("cost (est., first attempts)", f"{(prompt_tokens * price_in + completion * price_out) / 1e6:.4f}"))
    print_table(summary_table(f"gwq-data generate --dry-run · {p.ref} · nothing sent", rows))
