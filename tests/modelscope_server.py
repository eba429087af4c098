"""A small ModelScope hub on 127.0.0.1 for tests: the endpoints modelscope 1.40.2 (modelscope_hub 0.5.1) calls
to create a repo and upload to it, read from the installed SDK (`modelscope_hub/_legacy_api.py`, `_openapi.py`,
`_upload.py`). Point the SDK at it with MODELSCOPE_ENDPOINT=server.url before the first HubApi().

Implemented (prefix /api/v1 = legacy, /openapi/v1 = OpenAPI):
  POST /api/v1/login                                   token → user, git token
  GET  /openapi/v1/users/me                            the token's user
  POST /api/v1/datasets  (multipart) | /api/v1/models (JSON)   create; 400 + business code when it exists
  GET  /openapi/v1/{datasets|models}/{owner}/{name}    repo info with `private`; 404 when not visible to the caller
  GET  /api/v1/{datasets|models}/{owner}/{name}        the legacy fallback of the same
  POST /api/v1/repos/{type}s/{owner}/{name}/info/lfs/objects/batch   pre-signed PUT URL per missing blob
  PUT  /blobs/{sha256}                                 the blob itself (checked against its sha256)
  POST /api/v1/repos/{type}s/{owner}/{name}/commit/{rev}   inline base64 files and LFS pointers

Failure modes a test can switch on: an unknown token gets 401 everywhere; `drop_puts = n` closes the connection
on the next n blob PUTs after reading half the body (`drop_blob[sha256] = n`: only that blob's); `revoke_on_upload = True` invalidates the caller's
token at its first LFS-batch or commit call. Every request is logged without its Authorization header
or cookies, so tests can also check what was (not) sent.

What it leaves out: downloads, file listings, tags, deletes, studios.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALREADY_EXISTS = {"datasets": 10020101001, "models": 10010101001}


@dataclass
class Repo:
    kind: str  # "datasets" | "models"
    owner: str
    name: str
    private: bool
    license: str
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)


class Hub:
    """State shared by the handler threads."""

    def __init__(self, users: dict[str, str]):
        self.users = dict(users)  # token -> username
        self.orgs: dict[str, set[str]] = {}  # organisation -> members who may write to it
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.log: list[dict] = []  # {"method", "path", "status", "bytes" (request body)}
        self.drop_puts = 0
        self.drop_blob: dict[str, int] = {}  # sha256 -> how many of its next PUTs to drop
        self.revoke_on_upload = False  # the token dies at the first upload call (revoked mid-run)
        self.lock = threading.Lock()

    def files(self, kind: str, repo_id: str) -> dict[str, bytes]:
        """Every file of a repo as bytes, LFS pointers resolved to their blobs."""
        return dict(self.repos[(kind, repo_id)].files)

    def count(self, method: str, pattern: str, status: int | str = 200) -> int:
        return sum(1 for r in self.log
                   if r["method"] == method and re.search(pattern, r["path"]) and r["status"] == status)


class Handler(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    # -- plumbing ---------------------------------------------------------
    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is None:
            m = re.search(r"m_session_id=([^;]+)", self.headers.get("Cookie", ""))
            token = m.group(1) if m else None
        return self.hub.users.get(token) if token else None

    def _has_credentials(self) -> bool:
        return bool(self.headers.get("Authorization") or "m_session_id" in self.headers.get("Cookie", ""))

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, payload: dict | None = None, headers: dict | None = None):
        data = json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.hub.log.append({"method": self.command, "path": self.path, "status": status,
                             "bytes": int(self.headers.get("Content-Length") or 0)})

    def _legacy_ok(self, data):
        self._send(200, {"Code": 200, "Success": True, "Message": "success", "Data": data})

    def _legacy_err(self, status: int, message: str, code: int | None = None):
        self._send(status, {"Code": code or status, "Success": False, "Message": message})

    def _unauthorized(self) -> bool:
        """401 for a wrong token or none; True when the request was answered."""
        if self._user() is None:
            self._legacy_err(401, "AccessToken is invalid or expired" if self._has_credentials() else "用户未登录")
            return True
        return False

    def _may_write(self, owner: str) -> bool:
        user = self._user()
        return owner == user or user in self.hub.orgs.get(owner, set())

    def _visible(self, repo: Repo) -> bool:
        return not repo.private or self._may_write(repo.owner)

    # -- routes -----------------------------------------------------------
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/openapi/v1/users/me":
            user = self._user()
            if user is None:
                return self._send(401, {"success": False, "code": "InvalidAuthentication", "message": "bad token"})
            return self._send(200, {"success": True, "data": {"username": user, "email": f"{user}@example.com"}})
        m = re.fullmatch(r"/(openapi|api)/v1/(datasets|models)/([^/]+)/([^/]+)", path)
        if m:
            api, kind, owner, name = m.groups()
            repo = self.hub.repos.get((kind, f"{owner}/{name}"))
            if repo is None or not self._visible(repo):
                if api == "openapi":
                    return self._send(404, {"success": False, "code": "ResourceNotFound", "message": "not found"})
                return self._legacy_err(404, "数据集不存在" if kind == "datasets" else "模型不存在")
            info = {"id": f"{owner}/{name}", "owner": owner, "name": name, "private": repo.private,
                    "license": repo.license}
            if api == "openapi":
                return self._send(200, {"success": True, "data": info})
            return self._legacy_ok({"Id": info["id"], "Path": owner, "Name": name, "License": repo.license,
                                    "Visibility": 1 if repo.private else 5})
        self._send(404, {"message": f"no route {path}"})

    def do_PUT(self):
        m = re.fullmatch(r"/blobs/([0-9a-f]{64})", self.path)
        if not m:
            return self._send(404, {"message": "no route"})
        size = int(self.headers.get("Content-Length") or 0)
        with self.hub.lock:
            sha = m.group(1)
            drop = self.hub.drop_puts > 0 or self.hub.drop_blob.get(sha, 0) > 0
            if self.hub.drop_blob.get(sha, 0) > 0:
                self.hub.drop_blob[sha] -= 1
            elif drop:
                self.hub.drop_puts -= 1
        if drop:
            self.rfile.read(size // 2)
            self.hub.log.append({"method": "PUT", "path": self.path, "status": "dropped", "bytes": size // 2})
            self.close_connection = True
            return
        data = self.rfile.read(size)
        if self._unauthorized():
            return
        if hashlib.sha256(data).hexdigest() != m.group(1):
            return self._legacy_err(400, "sha256 mismatch")
        self.hub.blobs[m.group(1)] = data
        self._send(200, {"Code": 200, "Message": "ok"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path == "/api/v1/login":
            body = json.loads(self._body() or b"{}")
            user = self.hub.users.get(body.get("AccessToken"))
            if user is None:
                return self._legacy_err(400, "AccessToken is invalid or expired", 10010103009)
            # Like the real hub, the session cookie is the token itself; the SDK pickles it as its login.
            return self._send(200, {"Code": 200, "Success": True, "Data": {
                "AccessToken": "git-" + user, "Username": user, "Email": f"{user}@example.com"}},
                headers={"Set-Cookie": f"m_session_id={body['AccessToken']}; Path=/; Max-Age=2592000"})

        m = re.fullmatch(r"/api/v1/(datasets|models)", path)
        if m:
            return self._create(m.group(1))

        m = re.fullmatch(r"/api/v1/repos/(datasets|models)/([^/]+)/([^/]+)/(info/lfs/objects/batch|commit/[^/]+)", path)
        if m:
            kind, owner, name, op = m.groups()
            body = json.loads(self._body() or b"{}")  # read it before any answer: the connection is kept alive
            if self.hub.revoke_on_upload:
                self.hub.users.pop(self.headers.get("Authorization", "")[7:], None)
            if self._unauthorized():
                return
            repo = self.hub.repos.get((kind, f"{owner}/{name}"))
            if repo is None or not self._visible(repo):
                return self._legacy_err(404, "repo not found")
            if not self._may_write(owner):
                return self._legacy_err(403, "no write permission")
            if op.startswith("info"):
                return self._batch(body)
            return self._commit(repo, body)
        self._send(404, {"message": f"no route {path}"})

    def _create(self, kind: str):
        raw = self._body()
        if kind == "datasets":
            fields = _multipart(raw, self.headers.get("Content-Type", ""))
            owner = fields.get("Owner")
        else:
            fields = json.loads(raw or b"{}")
            owner = fields.get("Path")
        if self._unauthorized():
            return
        name = fields.get("Name")
        key = (kind, f"{owner}/{name}")
        if key in self.hub.repos:
            return self._legacy_err(400, "该名称已被注册使用，请重新命名", ALREADY_EXISTS[kind])
        if owner not in set(self.hub.users.values()) | set(self.hub.orgs):
            return self._legacy_err(404, f"owner {owner} does not exist")
        if not self._may_write(owner):
            return self._legacy_err(403, f"no permission to create repos under {owner}")
        private = int(fields.get("Visibility") or 5) == 1
        self.hub.repos[key] = Repo(kind, owner, name, private, fields.get("License") or "")
        self._legacy_ok({"Id": key[1], "Path": owner, "Name": name, "Visibility": 1 if private else 5})

    def _batch(self, body: dict):
        objects = []
        host = self.headers.get("Host")
        for obj in body.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.blobs:
                entry["actions"] = {"upload": {"href": f"http://{host}/blobs/{obj['oid']}"}}
            objects.append(entry)
        self._legacy_ok({"objects": objects})

    def _commit(self, repo: Repo, body: dict):
        staged = {}
        for action in body.get("actions", []):
            if action.get("action") == "delete":
                staged[action["path"]] = None
            elif action.get("type") == "lfs":
                blob = self.hub.blobs.get(action["sha256"])
                if blob is None:
                    return self._legacy_err(400, f"lfs object {action['sha256'][:12]} not uploaded")
                staged[action["path"]] = blob
            else:
                staged[action["path"]] = base64.b64decode(action["content"])
        for p, data in staged.items():
            if data is None:
                repo.files.pop(p, None)
            else:
                repo.files[p] = data
        repo.commits.append({"message": body.get("commit_message"), "paths": sorted(staged)})
        self._send(200, {"Code": 200, "Success": True, "Data": {"commit": len(repo.commits)}})


def _multipart(raw: bytes, content_type: str) -> dict[str, str]:
    """The text fields of a multipart/form-data body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    return {part.get_param("name", header="content-disposition"): part.get_content()
            for part in msg.iter_parts()}


class HubServer:
    """`with HubServer({"tok": "alice"}) as hub: ... hub.url ... hub.state.repos`"""

    def __init__(self, users: dict[str, str]):
        self.state = Hub(users)
        handler = type("BoundHandler", (Handler,), {"hub": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()
