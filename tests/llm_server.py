"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and the generate benchmark.

It serves GET /v1/models and POST /v1/chat/completions (aiohttp) with a
deterministic "styler": it reads the dialogue out of gwq's rewrite (or
synthesize) task message and answers {"replies": [...]} with each plain reply
wrapped in translation-tone phrases, so the quality gate passes.

Faults are injected by markers in the row's text, so one run can mix them:
  <<429>> <<500>> <<hang>> <<truncated>> <<nonjson>>   transport faults, for the
      first `fail_times` times the same request body arrives (SDK retries then succeed)
  <<badjson>> <<wrongcount>>   an unusable answer to the first ask; the re-ask succeeds
  <<badjson-always>>           never a usable answer
  <<plain>> <<dropnum>>        a well-formed answer the gate must reject (no tone / lost numbers)
Server-wide: `api_key` (401 when the bearer differs), `models` (404 for others),
`latency` seconds per completion, `not_openai` (HTML for everything),
`json_mode=False` (400 when response_format is sent).

Every request is recorded in `requests` (path, body, headers without Authorization).

    python tests/llm_server.py --latency 0.2     # prints "READY http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections import Counter

from aiohttp import web

WRAP_HEAD = "我听说，"
WRAP_TAIL = "难道这不是明摆着的道理吗？方圆十里的乡亲没有不点头称是的。嗟乎！"
TRANSPORT_FAULTS = ("429", "500", "hang", "truncated", "nonjson")


def style(plain: str) -> str:
    return f"{WRAP_HEAD}{plain}{WRAP_TAIL}"


class FakeLLM:
    def __init__(self, *, latency: float = 0.0, api_key: str | None = None, models=("fake-model",),
                 fail_times: int = 1, hang_s: float = 3.0, not_openai: bool = False, json_mode: bool = True,
                 record: bool = True):
        self.latency, self.api_key, self.models = latency, api_key, list(models)
        self.fail_times, self.hang_s, self.not_openai, self.json_mode = fail_times, hang_s, not_openai, json_mode
        self.record = record
        self.requests: list[dict] = []
        self.completions = 0
        self._seen: Counter = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ----- lifecycle (a thread with its own event loop, so tests and subprocesses can share it)
    def start(self, port: int = 0) -> str:
        ready = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start(port))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.base_url

    async def _start(self, port: int) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self._loop:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def bodies(self) -> list[str]:
        """A hash per completion request received, for counting re-sends."""
        return [r["hash"] for r in self.requests if r["path"].endswith("/chat/completions")]

    # ----- HTTP
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if self.record:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
            body = json.loads(raw) if raw.startswith(b"{") else None
            self.requests.append({"path": request.path, "headers": headers, "body": body,
                                  "hash": hashlib.sha256(raw).hexdigest()})
        if self.not_openai:
            return web.Response(text="<html><body>It works!</body></html>", content_type="text/html")
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if request.method == "GET" and request.path == "/v1/models":
            return web.json_response({"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "gwq-tests"} for m in self.models]})
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return await self._chat(request, json.loads(raw), hashlib.sha256(raw).hexdigest())
        return _error(404, f"no route {request.method} {request.path}", "not_found")

    async def _chat(self, request: web.Request, body: dict, key: str) -> web.StreamResponse:
        model = body.get("model")
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found")
        if "response_format" in body and not self.json_mode:
            return _error(400, "response_format is not supported by this server", "invalid_request_error")
        messages = body["messages"]
        text = "\n".join(m["content"] for m in messages[1:] if isinstance(m.get("content"), str))
        self._seen[key] += 1
        transient = self._seen[key] <= self.fail_times
        if self.latency:
            await asyncio.sleep(self.latency)
        if transient and "<<429>>" in text:
            return _error(429, "Rate limit reached, retry after 0s", "rate_limit_exceeded", {"retry-after": "0"})
        if transient and "<<500>>" in text:
            return _error(500, "The server had an error while processing your request.", "server_error")
        if transient and "<<hang>>" in text:
            await asyncio.sleep(self.hang_s)
        if transient and "<<nonjson>>" in text:
            return web.Response(text="<html>502 Bad Gateway</html>", status=200, content_type="application/json")
        if transient and "<<truncated>>" in text:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Content-Length": "4000"})
            await resp.prepare(request)
            await resp.write(b'{"id": "chatcmpl-cut", "choices": [{"ind')
            request.transport.close()
            return resp
        content = self._answer(messages)
        self.completions += 1
        prompt_chars = sum(len(m.get("content") or "") for m in messages)
        return web.json_response({
            "id": f"chatcmpl-{key[:12]}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_chars // 2, "completion_tokens": len(content) // 2,
                      "total_tokens": prompt_chars // 2 + len(content) // 2}})

    def _answer(self, messages: list[dict]) -> str:
        # A first ask ends with the task itself; a re-ask ends with gwq's repair message.
        first_ask = any(mark in messages[-1]["content"] for mark in ("对话：", "话题："))
        whole = "\n".join(m["content"] for m in messages[1:])
        if "<<badjson-always>>" in whole or (first_ask and "<<badjson>>" in whole):
            return "抱歉，我无法按要求的格式回答。"
        if any("话题：" in m["content"] for m in messages if m["role"] == "user"):
            return self._synthesize(messages)
        # The task of this row is the last user message that carries the dialogue.
        dialogue = next(m["content"] for m in reversed(messages) if m["role"] == "user" and "对话：" in m["content"])
        plains = [json.loads(line)["content"] for line in dialogue.split("对话：", 1)[1].strip().splitlines()
                  if '"reply"' in line]
        if first_ask and "<<wrongcount>>" in whole:
            plains = plains + ["多出来的一条"]
        if "<<plain>>" in whole:
            replies = [p + "就这样。" for p in plains]
        elif "<<dropnum>>" in whole:
            replies = [style(re.sub(r"\d+", "若干", p)) for p in plains]
        else:
            replies = [style(p) for p in plains]
        return json.dumps({"replies": replies}, ensure_ascii=False)

    def _synthesize(self, messages: list[dict]) -> str:
        task = next(m["content"] for m in reversed(messages) if m["role"] == "user" and "话题：" in m["content"])
        topic = re.search(r"话题：(.*)", task).group(1).strip()
        n = int(re.search(r"轮数：(\d+)", task).group(1))
        index = int(re.search(r"第 (\d+) 段", task).group(1))
        turns = []
        for i in range(1, n + 1):
            plain = f"关于{topic}，第{index}段对话的第{i}条建议：每天练习30分钟，坚持8周。"
            turns.append({"user": f"{topic}有什么建议？（{i}）", "plain": plain, "styled": style(plain)})
        return json.dumps({"turns": turns}, ensure_ascii=False)


def _error(status: int, message: str, code: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": code}},
                             status=status, headers=headers)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--model", default="fake-model")
    args = ap.parse_args()
    server = FakeLLM(latency=args.latency, models=[args.model], record=False)
    print("READY", server.start(args.port), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
