"""Orchestrate a generate run: rows → prompts → API (cached) → parse → gate → OUT or rejects, exactly once.

    jobs = rewrite_jobs(cfg)              # one per input row (bad rows are rejects already)
    result = asyncio.run(Runner(cfg, prompt).run(jobs, input_rejects))

Exactly once, across crashes: every response is committed to the cache before
it is used; every finished row is one ``os.write`` of one line to OUT or to the
rejects file, keyed by ``file:line`` (``#k`` for the k-th synthesized dialogue
of a topic). A re-run first cuts a torn last line left by kill -9, skips every
key already present, and replays cached responses for the rest, so only
requests that never finished are sent again. When every row is done, both
files are rewritten in input order, so a resumed run and an uninterrupted one
end with the same files.

What it leaves out: several input files per run, streaming, batch APIs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gwq_data.errors import UsageError
from gwq_data.generate.answer import AnswerError, parse_replies, parse_turns
from gwq_data.generate.cache import Cache, Completion
from gwq_data.generate.client import AttemptError, Client, ClientConfig, FatalError
from gwq_data.generate.gate import Gate, GateConfig
from gwq_data.generate.prompt import Prompt
from gwq_data.jsonl import BadLine, atomic_writer, dumps, read_rows, reject_record


@dataclass
class RunConfig:
    out: Path
    rejects: Path
    cache: Path
    client: ClientConfig
    gate: GateConfig = field(default_factory=GateConfig)
    max_attempts: int = 3          # requests per row: re-asks and failed attempts together
    max_requests: int | None = None
    max_cost: float | None = None
    price_in: float = 0.0          # per 1M prompt tokens
    price_out: float = 0.0         # per 1M completion tokens
    retry_reasons: tuple = ()      # rejects with these reasons are done again (e.g. api_error)


@dataclass
class Job:
    key: str
    order: int                     # position in the final files: the input line, or the dialogue number
    source: str
    line: int
    record: dict | None = None     # rewrite: the canonical input record
    topic: str | None = None       # synthesize: topic, dialogue number on it, turns
    index: int = 0
    turns: int = 0
    fingerprint: str = ""          # what the row asks for; resume checks it against what the journals hold


def fingerprint(obj) -> str:
    return hashlib.sha256(dumps(obj).encode("utf-8")).hexdigest()[:16]


class BudgetReached(Exception):
    pass


@dataclass
class Stats:
    total: int = 0
    resumed: int = 0
    styled: int = 0
    rejects: Counter = field(default_factory=Counter)
    requests: int = 0
    cached: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)
    stopped: str | None = None     # budget message, when the run stopped early
    fatal: str | None = None
    http_errors: int = 0           # HTTP error responses the SDK retried or gave up on
    rejected_total: int = 0        # rows in the rejects file, earlier runs included
    retried: int = 0               # earlier rejects taken out again by --retry-reasons

    @property
    def done(self) -> int:
        return self.resumed + self.styled + sum(self.rejects.values())


def reject_key(r: dict) -> str:
    data = r.get("data")
    index = data.get("index") if isinstance(data, dict) and "topic" in data else None
    return f"{r['source']}:{r['line']}" + (f"#{index}" if index else "")


def out_key(r: dict) -> str | None:
    meta = r.get("meta")
    return meta.get("source") if isinstance(meta, dict) else None


class Journal:
    """An append-only JSONL file whose rows are keyed; safe against kill -9 at any instant."""

    def __init__(self, path: Path, key_fn):
        self.path, self.key_fn = path, key_fn
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self.keys: set[str] = set()
        self.shas: dict[str, str] = {}    # key -> input fingerprint, for rows that carry one
        self.dropped_keys: set[str] = set()  # rows taken out by drop(): asked afresh, not replayed from the cache
        self.makers: Counter = Counter()  # (generator, prompt_hash) of rows already there
        if path.exists():
            for row in read_rows(path):
                if not isinstance(row, BadLine) and isinstance(row.data, dict) and self.key_fn(row.data):
                    key = self.key_fn(row.data)
                    self.keys.add(key)
                    meta = row.data.get("meta") if isinstance(row.data.get("meta"), dict) else {}
                    sha = meta.get("input_sha") or row.data.get("input_sha")
                    if sha:
                        self.shas[key] = sha
                    self.makers[(meta.get("generator"), meta.get("prompt_hash"))] += 1
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _cut_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            content = f.read()
            f.truncate(content.rfind(b"\n") + 1)

    def drop(self, reasons: set[str]) -> int:
        """Remove rows whose reason is in `reasons` (atomically), so this run does them again."""
        if not reasons or not self.path.exists():
            return 0
        rows = [r.data for r in read_rows(self.path) if not isinstance(r, BadLine)]
        keep = [r for r in rows if r.get("reason") not in reasons]
        self.dropped_keys = {self.key_fn(r) for r in rows if r.get("reason") in reasons}
        if len(keep) < len(rows):
            os.close(self.fd)
            with atomic_writer(self.path) as f:
                f.writelines(dumps(r) + "\n" for r in keep)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.keys = {self.key_fn(r) for r in keep}
            self.shas = {k: v for k, v in self.shas.items() if k in self.keys}
        return len(rows) - len(keep)

    def append(self, key: str, obj: dict) -> None:
        # One write() of a whole line: a killed process leaves the line whole or absent.
        os.write(self.fd, (dumps(obj) + "\n").encode("utf-8"))
        self.keys.add(key)

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)

    def sort(self, order: dict[str, int]) -> None:
        """Rewrite in input order (atomically); rows of other runs keep their place at the end."""
        rows = [r.data for r in read_rows(self.path) if not isinstance(r, BadLine)]
        rows.sort(key=lambda r: order.get(self.key_fn(r), len(order)))
        with atomic_writer(self.path) as f:
            f.writelines(dumps(r) + "\n" for r in rows)


class Runner:
    def __init__(self, config: RunConfig, prompt: Prompt, progress=None):
        self.cfg, self.prompt, self.progress = config, prompt, progress
        self.stats = Stats()
        self.gate = Gate(config.gate, prompt.example_texts())
        c = config.client.params
        self.meta_params = {"temperature": c.get("temperature"), "seed": c.get("seed")}
        self._task = None

    # ----- the run
    async def run(self, jobs: list[Job], input_rejects: list[dict]) -> Stats:
        cfg, s = self.cfg, self.stats
        client = self.client = Client(cfg.client)  # first: a missing API key fails before any file is touched
        self.out, self.rej = Journal(cfg.out, out_key), Journal(cfg.rejects, reject_key)
        s.retried = self.rej.drop(set(cfg.retry_reasons))
        other = sum(n for (model, phash), n in self.out.makers.items() if (model, phash) != (cfg.client.model, self.prompt.hash))
        if other:
            from gwq_data.console import console
            console.print(f"[yellow]warning:[/] {cfg.out} already holds {other} rows made by another model or prompt; "
                          "they are kept and skipped. Use a new --out to redo them with this one.", highlight=False)
        self.cache = Cache(cfg.cache)
        order = {j.key: j.order for j in jobs} | {reject_key(r): r["line"] for r in input_rejects}
        todo = self._todo(jobs)
        for r in input_rejects:
            if reject_key(r) not in self.rej.keys:
                self.rej.append(reject_key(r), r)
                s.rejects[r["reason"]] += 1
            else:
                s.resumed += 1
        s.total = len(jobs) + len(input_rejects)
        s.resumed += len(jobs) - len(todo)
        if self.progress:
            self._task = self.progress.add_task("generating", total=s.total, completed=s.done, info="")
        try:
            if todo:
                models = await client.preflight()
                if models and cfg.client.model not in models:
                    from gwq_data.console import console
                    console.print(f"[yellow]warning:[/] model {cfg.client.model!r} is not in {cfg.client.base_url}/models "
                                  f"({', '.join(models[:8])}); trying it anyway", highlight=False)
            await self._pool(todo)
        except FatalError as e:
            s.fatal = str(e)
        finally:
            s.http_errors, s.rejected_total = client.http_errors, len(self.rej.keys)
            await client.close()
            self.out.close()
            self.rej.close()
            self.cache.close()
        if not s.fatal and not s.stopped:
            self.out.sort(order)
            self.rej.sort(order)
        return s

    async def _pool(self, todo: list[Job]) -> None:
        it = iter(todo)

        async def worker():
            for job in it:
                if self.stats.stopped:
                    return
                try:
                    await (self._rewrite(job) if job.record is not None else self._synthesize(job))
                except BudgetReached as e:
                    self.stats.stopped = str(e)
                    return
                self._tick()

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(self.cfg.client.concurrency, len(todo))))]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            if t.exception():
                raise t.exception()

    # ----- one request, through the cache
    async def _ask(self, messages: list[dict], usage: dict, fresh: bool = False) -> Completion:
        cfg, s = self.cfg, self.stats
        key = Cache.key(cfg.client.model, messages, cfg.client.params, cfg.client.base_url)
        # fresh: a row retried with --retry-reasons; its cached answer is what was rejected, so ask again
        # (the new answer replaces it in the cache, journal first as always).
        hit = None if fresh else self.cache.get(key)
        if hit is None:
            if cfg.max_requests is not None and s.requests >= cfg.max_requests:
                raise BudgetReached(f"reached --max-requests {cfg.max_requests}")
            if cfg.max_cost is not None and s.cost >= cfg.max_cost:
                raise BudgetReached(f"reached --max-cost {cfg.max_cost:g} (spent {s.cost:.4f})")
            s.requests += 1
            hit = await self.client.complete(messages, self._estimate(messages) if cfg.client.tpm else 0)
            self.cache.put(key, cfg.client.model, self.prompt.ref, hit)  # journal first, then use
            s.prompt_tokens += hit.prompt_tokens
            s.completion_tokens += hit.completion_tokens
            s.cost += (hit.prompt_tokens * cfg.price_in + hit.completion_tokens * cfg.price_out) / 1e6
        else:
            s.cached += 1
        usage["prompt_tokens"] += hit.prompt_tokens
        usage["completion_tokens"] += hit.completion_tokens
        usage["created_at"] = hit.created_at
        return hit

    def _estimate(self, messages: list[dict]) -> int:
        """Tokens a request will use, for --tpm, without tokenizing: Chinese runs ~1.4 chars a token."""
        completion = self.cfg.client.params.get("max_tokens") or 512
        return int(sum(len(m["content"]) for m in messages) / 1.4) + completion

    async def _attempts(self, messages: list[dict], n: int, parse, usage: dict, fresh: bool = False):
        """Ask, parse, re-ask with the problem spelled out; (parsed, None) or (None, (reason, detail, answer))."""
        last, answer = ("no_attempt", "max_attempts is 0"), ""
        for attempt in range(self.cfg.max_attempts):
            try:
                c = await self._ask(messages, usage, fresh=fresh and attempt == 0)
            except AttemptError as e:
                last = (e.reason, e.detail)
                if e.reason == "bad_request":  # the server refuses this content; asking again won't change that
                    break
                await asyncio.sleep(min(8.0, 0.25 * 2 ** attempt) * random.uniform(0.5, 1.0))
                continue
            answer = c.content
            try:
                if c.finish_reason == "length":
                    raise AnswerError("truncated", "the answer was cut off at max_tokens; write shorter replies")
                return parse(c.content, n), None
            except AnswerError as e:
                last = (e.reason, e.detail)
                if attempt + 1 < self.cfg.max_attempts:
                    self.stats.reasks += 1
                messages = messages + [{"role": "assistant", "content": c.content[:4000]},
                                       {"role": "user", "content": self.prompt.repair_message(e.detail, n)}]
        return None, (*last, answer)

    # ----- the two modes
    async def _rewrite(self, job: Job) -> None:
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "created_at": None}
        msgs = job.record["messages"]
        n = sum(m["role"] == "assistant" for m in msgs)
        replies, failure = await self._attempts(self.prompt.rewrite_messages(job.record), n, parse_replies, usage,
                                                fresh=job.key in self.rej.dropped_keys)
        if failure:
            reason, detail, answer = failure
            return self._reject(job, reason, f"after {self.cfg.max_attempts} attempts: {detail}",
                                {"record": job.record, "answer": answer[:2000]})
        styled = iter(replies)
        out_msgs = []
        for m in msgs:
            if m["role"] == "assistant":
                plain = m.get("original") or m["content"]
                out_msgs.append({"role": "assistant", "content": next(styled), "original": plain})
            else:
                out_msgs.append({"role": m["role"], "content": m["content"]})
        # Input meta (topic, author...) is kept; generate's own keys (the shared contract) win.
        meta = (job.record.get("meta") or {}) | self._meta(job, usage)
        record = ({"id": job.record["id"]} if "id" in job.record else {}) | {"messages": out_msgs, "meta": meta}
        self._finish(job, record)

    async def _synthesize(self, job: Job) -> None:
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "created_at": None}
        messages = self.prompt.synthesize_messages(job.topic, job.turns, job.index)
        turns, failure = await self._attempts(messages, job.turns, parse_turns, usage,
                                              fresh=job.key in self.rej.dropped_keys)
        if failure:
            reason, detail, answer = failure
            return self._reject(job, reason, f"after {self.cfg.max_attempts} attempts: {detail}", {"answer": answer[:2000]})
        out_msgs = []
        for t in turns:
            out_msgs += [{"role": "user", "content": t["user"]},
                         {"role": "assistant", "content": t["styled"], "original": t["plain"]}]
        record = {"id": f"{Path(job.source).stem}-{job.line}-{job.index}", "messages": out_msgs, "meta": self._meta(job, usage)}
        self._finish(job, record)

    def _todo(self, jobs: list[Job]) -> list[Job]:
        """Jobs not yet in OUT or the rejects file. A row counts as done by its place (file:line) or,
        when the input was given under another path, by its content; a row whose place is done but
        whose content changed means the input was edited under a journal, which we refuse."""
        done_shas = set(self.out.shas.values()) | set(self.rej.shas.values())
        todo = []
        for j in jobs:
            stored = self.out.shas.get(j.key) or self.rej.shas.get(j.key)
            if stored and j.fingerprint and stored != j.fingerprint:
                raise UsageError(f"{j.source}:{j.line} is not the row {self.cfg.out} was made from (the input changed "
                                 "since); write to a new --out, or restore the input file")
            if j.key in self.out.keys or j.key in self.rej.keys or (j.fingerprint and j.fingerprint in done_shas):
                continue
            todo.append(j)
        return todo

    def _finish(self, job: Job, record: dict) -> None:
        problems = []
        k = 0
        for m in record["messages"]:
            if m["role"] == "assistant":
                k += 1
                problems += [(reason, f"reply {k} {reason}: {detail}") for reason, detail in self.gate.check(m["original"], m["content"])]
        if problems:
            detail = "; ".join(d for _, d in problems[:4])
            return self._reject(job, problems[0][0], detail, {"record": record})
        self.out.append(job.key, record)
        self.stats.styled += 1

    def _reject(self, job: Job, reason: str, detail: str, data: dict) -> None:
        if job.topic is not None:
            data = {"topic": job.topic, "index": job.index} | data
        self.rej.append(job.key, {**reject_record(job.source, job.line, reason, detail, data=data),
                                  "input_sha": job.fingerprint})
        self.stats.rejects[reason] += 1

    def _meta(self, job: Job, usage: dict) -> dict:
        return {"source": job.key, "input_sha": job.fingerprint, "generator": self.cfg.client.model, "prompt": self.prompt.name,
                "prompt_hash": self.prompt.hash, "params": self.meta_params,
                "usage": {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]},
                "created_at": usage["created_at"]}

    def _tick(self) -> None:
        if not self.progress:
            return
        s = self.stats
        elapsed = max(time.monotonic() - s.started, 1e-6)
        rej = ", ".join(f"{k} {v}" for k, v in s.rejects.most_common(3))
        cost = f" · ${s.cost:.4f}" if self.cfg.price_in or self.cfg.price_out else ""
        info = (f"{s.requests / elapsed:.1f} req/s · {s.prompt_tokens + s.completion_tokens:,} tok{cost}"
                + (f" · rejects: {rej}" if rej else ""))
        self.progress.update(self._task, completed=s.done, info=info)


# ----- building the job list
def rewrite_jobs(path: Path, limit: int | None, max_input_tokens: int) -> tuple[list[Job], list[dict]]:
    """One job per valid input row; invalid rows come back as reject dicts (they count as done)."""
    from gwq_data.load import Loaded, load
    from gwq_data.records import Limits

    jobs, bad = [], []
    for item in load([path], Limits(max_tokens=max_input_tokens)):
        if limit is not None and len(jobs) + len(bad) >= limit:
            break
        if isinstance(item, Loaded):
            jobs.append(Job(f"{item.source}:{item.line}", item.line, item.source, item.line, record=item.record,
                            fingerprint=fingerprint(item.record["messages"])))
        else:
            bad.append(item)
    return jobs, bad


def synthesize_jobs(topics: Path, num: int, turns: int) -> list[Job]:
    """`num` dialogues spread round-robin over the topics (one per line, or JSONL with "topic")."""
    if not topics.is_file():
        raise UsageError(f"--topics {topics}: no such file")
    found = []
    with open(topics, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
            except UnicodeDecodeError as e:
                raise UsageError(f"{topics}:{lineno}: not UTF-8 (byte {e.start}); save the file as UTF-8") from None
            if not text or text.startswith("#"):
                continue
            if text.startswith("{"):
                import json
                try:
                    text = json.loads(text)["topic"]
                except (ValueError, KeyError, TypeError):
                    raise UsageError(f"{topics}:{lineno}: expected a topic, or a JSON object with a \"topic\" string") from None
            found.append((lineno, str(text)))
    if not found:
        raise UsageError(f"--topics {topics}: no topics (one per line)")
    jobs = []
    for i in range(num):
        line, topic = found[i % len(found)]
        index = i // len(found) + 1
        jobs.append(Job(f"{topics}:{line}#{index}", i, str(topics), line, topic=topic, index=index, turns=turns,
                        fingerprint=fingerprint([topic, index, turns])))
    return jobs
