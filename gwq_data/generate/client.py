"""One async chat-completion call to any OpenAI-compatible server, with limits and readable errors.

Built on the openai SDK's AsyncOpenAI: it already retries 429/5xx/timeouts/
connection errors with exponential backoff and jitter and honours Retry-After
(`retries` sets how often). This module adds what the SDK leaves to callers:

- RPM/TPM limits (aiolimiter leaky buckets) shared by all concurrent requests;
- ``response_format={"type": "json_object"}`` where the server supports it, and a
  silent fallback to plain text where it answers 400 to that field;
- a mapping of every failure to either ``FatalError`` (stop the run: bad URL,
  401/403, unknown model, not an OpenAI server, rate limit that won't clear) or
  ``AttemptError`` (this row's attempt failed: 5xx, timeout, garbled body — the
  caller may try again, up to its cap);
- redaction: the API key never appears in any message we raise.

What it leaves out: streaming, tool calls, the Responses API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from gwq_data.errors import GwqError
from gwq_data.generate.cache import Completion


class FatalError(GwqError):
    """The run cannot go on; the message says what to fix. Finished rows are kept."""


class AttemptError(Exception):
    """One attempt at a row failed in a way that may pass on a retry."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class ClientConfig:
    base_url: str = "https://api.openai.com/v1"
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    retries: int = 4                      # the SDK's own retries per request
    concurrency: int = 16
    rpm: int | None = None
    tpm: int | None = None
    json_mode: bool = True                # ask for response_format=json_object
    params: dict = field(default_factory=dict)  # temperature, seed, max_tokens


def is_local(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def api_key(config: ClientConfig) -> str:
    """The key from the environment; local servers (vLLM, swift deploy) may go without one."""
    import os

    key = os.environ.get(config.api_key_env, "")
    if key:
        return key
    if is_local(config.base_url):
        return "EMPTY"
    raise FatalError(f"no API key: set the environment variable {config.api_key_env} "
                     f"(or name another with --api-key-env) for {config.base_url}")


class Client:
    def __init__(self, config: ClientConfig):
        from aiolimiter import AsyncLimiter
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        self.config = config
        self._key = api_key(config)
        self.http_responses = 0   # every HTTP response, SDK retries included
        self.http_errors = 0      # those with status >= 400
        limits = _httpx().Limits(max_connections=max(config.concurrency, 1) + 4,
                               max_keepalive_connections=max(config.concurrency, 1) + 4)
        try:  # aiohttp's connection pool costs less CPU per request than httpx's at high concurrency
            from openai import DefaultAioHttpClient
            http = DefaultAioHttpClient(limits=limits, event_hooks={"response": [self._count]})
        except RuntimeError:
            http = DefaultAsyncHttpxClient(limits=limits, event_hooks={"response": [self._count]})
        self.sdk = AsyncOpenAI(base_url=config.base_url, api_key=self._key, timeout=config.timeout,
                               max_retries=config.retries, http_client=http)
        self._rpm = AsyncLimiter(config.rpm, 60) if config.rpm else None
        self._tpm = AsyncLimiter(config.tpm, 60) if config.tpm else None
        self.verified = False  # the server has answered in the OpenAI format at least once

    async def _count(self, response) -> None:
        self.http_responses += 1
        if response.status_code >= 400:
            self.http_errors += 1

    def redact(self, text: str) -> str:
        if self._key and self._key != "EMPTY":
            text = text.replace(self._key, "***")
        return text

    async def preflight(self) -> list[str]:
        """List the server's models; turns a wrong URL, key or server into one clear error."""
        import openai

        url = self.config.base_url
        try:
            page = await self.sdk.models.list()
        except openai.NotFoundError:
            return []  # some compatible servers have no /models; the first completion will tell
        except openai.APIError as e:
            raise self._fatal(e) from None
        except Exception:  # a 200 that is not an OpenAI model list (HTML, another API)
            page = None
        data = getattr(page, "data", None)
        if not isinstance(data, list):
            raise FatalError(f"{url}/models did not answer in the OpenAI format: is {url} an OpenAI-compatible "
                             "endpoint? (it usually ends in /v1; see docs/generate.md for presets)")
        self.verified = True
        return [m.id for m in data if getattr(m, "id", None)]

    async def complete(self, messages: list[dict], est_tokens: int = 0) -> Completion:
        """One chat completion (SDK retries included) or AttemptError / FatalError."""
        import openai

        if self._rpm:
            await self._rpm.acquire(1)
        if self._tpm:
            await self._tpm.acquire(min(max(est_tokens, 1), self.config.tpm))
        body = {"model": self.config.model, "messages": messages}
        body |= {k: v for k, v in self.config.params.items() if v is not None}
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        try:
            # The SDK's documented raw `post` rather than chat.completions.create: create() walks
            # every message through its TypedDict transform, ~3 ms of CPU for a few-shot prompt,
            # more than everything else here together; a plain dict result also skips building
            # pydantic models for the three fields we read. post() keeps the SDK's retries,
            # backoff, timeouts, auth and error types.
            result = await self.sdk.post("/chat/completions", cast_to=dict, body=body)
        except openai.BadRequestError as e:
            if self.config.json_mode and "response_format" in str(e):
                self.config.json_mode = False  # this server can't do JSON mode; the prompt asks for JSON anyway
                return await self.complete(messages, 0)
            raise AttemptError("bad_request", self.redact(_short(e))) from None
        except openai.APIConnectionError as e:  # timeouts included
            if _connect_failed(e):
                raise self._fatal(e) from None  # down or mistyped: stop, the rows are not at fault
            if self.verified or isinstance(e, openai.APITimeoutError):
                # A hang or a body cut off mid-answer is a transient fault of this attempt.
                raise AttemptError("api_error", self.redact(_short(e.__cause__ or e))) from None
            raise self._fatal(e) from None
        except openai.InternalServerError as e:
            raise AttemptError("api_error", self.redact(_short(e))) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError,
                openai.RateLimitError) as e:
            raise self._fatal(e) from None
        except openai.APIStatusError as e:
            raise AttemptError("api_error", self.redact(_short(e))) from None
        except Exception as e:  # a 200 whose body is not JSON, or JSON of another shape
            return self._not_openai(f"{type(e).__name__}: {_short(e)}")
        try:
            choice = result["choices"][0]
            content, finish = choice["message"].get("content") or "", choice.get("finish_reason")
            if not isinstance(content, str):
                raise TypeError(f"message.content is {type(content).__name__}")
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            return self._not_openai(f"no choices[0].message.content ({type(e).__name__}: {str(e)[:60]}) in {str(result)[:80]!r}")
        self.verified = True
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        return Completion(content=content, finish_reason=finish if isinstance(finish, str) else None,
                          prompt_tokens=_count(usage.get("prompt_tokens")),
                          completion_tokens=_count(usage.get("completion_tokens")),
                          created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def _not_openai(self, detail: str):
        if not self.verified:
            raise FatalError(f"{self.config.base_url}/chat/completions did not answer in the OpenAI format ({self.redact(detail)}): "
                             "is it an OpenAI-compatible endpoint? (it usually ends in /v1)")
        raise AttemptError("bad_response", self.redact(detail))

    def _fatal(self, e: Exception) -> FatalError:
        import openai

        url, model, env = self.config.base_url, self.config.model, self.config.api_key_env
        msg = self.redact(_short(e))
        if isinstance(e, openai.AuthenticationError):
            text = f"{url} refused the API key from ${env} (401: {msg}); set {env} to a valid key"
        elif isinstance(e, openai.PermissionDeniedError):
            text = f"{url} denied access (403: {msg}); check that the key in ${env} may use model {model!r}"
        elif isinstance(e, openai.NotFoundError):
            if "model" in msg.lower():
                text = f"unknown model {model!r} at {url} (404: {msg}); list the server's models with GET {url}/models"
            else:
                text = f"{url}/chat/completions not found (404): is --base-url an OpenAI-compatible endpoint ending in /v1?"
        elif isinstance(e, openai.RateLimitError):
            text = (f"{url} kept answering 429 ({msg}) after {self.config.retries} retries; lower --concurrency or set "
                    "--rpm/--tpm, then run the same command again to resume")
        elif isinstance(e, openai.APIConnectionError) and (_connect_failed(e) or not isinstance(e, openai.APITimeoutError)):
            cause = _root(e)
            text = (f"cannot reach {url} ({type(cause).__name__}: {self.redact(str(cause))[:120] or 'connection failed'}); "
                    "check --base-url and that the server is running, then run the same command again to resume")
        elif isinstance(e, openai.APITimeoutError):
            text = f"{url} did not answer within --timeout {self.config.timeout:g}s; is the server up and the URL right?"
        elif isinstance(e, openai.APIStatusError):
            text = f"{url} answered HTTP {e.status_code}: {msg}"
        else:
            text = f"{url}: {type(e).__name__}: {msg}"
        return FatalError(text)

    async def close(self) -> None:
        await self.sdk.close()


def _count(value) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _root(e: BaseException) -> BaseException:
    while e.__cause__ is not None:
        e = e.__cause__
    return e


def _connect_failed(e: BaseException) -> bool:
    """Could no connection be made at all? (Refused, DNS, unreachable; not a hang or a cut-off body.)

    Looks down the cause chain because openai's aiohttp transport reports a refused
    connection as ConnectTimeout; the original aiohttp ClientConnectorError is below it.
    """
    while e is not None:
        if isinstance(e, (_httpx().ConnectError, ConnectionRefusedError)) or type(e).__name__.startswith("ClientConnector"):
            return True
        e = e.__cause__
    return False


def _httpx():
    """The HTTP library under the installed openai SDK (httpx2 in openai>=3, httpx before)."""
    try:
        import httpx2
        return httpx2
    except ImportError:
        import httpx
        return httpx


def _short(e: Exception) -> str:
    """The server's error message without the SDK's dict dump, one line, bounded."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(msg, str) and msg:
            return " ".join(msg.split())[:200]
    return " ".join(str(e).split())[:200]
