"""A local stand-in for huggingface.co that speaks the Hub HTTP API the real ``huggingface_hub`` client uses.

No installable server speaks the Hub's *write* API (see ``shared/reference/hub-protocol.md``), so ltzoo's
tests and ``ltzoo demo`` run the real client against this one. It keeps git-like state: model repos with
branches, pull-request refs (``refs/pr/N``) and immutable commits whose trees map paths to
content-addressed blobs. Endpoints: whoami, agent-harnesses (an empty registry), repo create, repo info,
tree, paths-info, refs, commits, branch create, preupload (always "regular" mode: the client then sends
bytes base64-inline in the commit, so neither Git-LFS nor Xet is needed), commit (NDJSON: added and
deleted files; ``parentCommit`` gives 412 when stale, ``create_pr`` commits to a new ``refs/pr/N``),
validate-yaml, and ``resolve`` downloads with ``X-Repo-Commit`` and ``ETag``. Errors are JSON with the
``X-Error-Code`` header the client maps to typed exceptions.

It serves what ltzoo and its tests call, nothing more: model repos only (no datasets or spaces), no
repo or branch deletion, and no ``Range`` requests (HTTP lets a server answer one with the whole file,
and the client then restarts its download from the first byte).

Auth: reads of public repos need no token; a token that is sent must be valid (else 401, as on the
Hub). Writes need ``Authorization: Bearer <token>``: 401 when missing, 403 when the token is unknown,
read-only, or not allowed in the namespace.

Run it by hand (prints its URL on the first line, then serves until interrupted)::

    python -m ltzoo.testing.hub_server --port 0 --token T --data DIR

Fault injection (:class:`Faults`, off by default) lets tests put the server where a real Hub fails: stalled
in the middle of a download or of a commit upload (then killed, as a crashed server is: run it as a process
with ``--stall-download PATH`` / ``--stall-commit`` and ``--data DIR``, kill it when it prints ``stalled: ...``,
and start it again on the same ``--data`` and ``--port``), or holding a download until several clients are
inside it at once.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml  # PyYAML: a dependency of huggingface_hub, which this server stands in for

COMMIT_OID = re.compile(r"^[0-9a-f]{40}$")
_COMMIT_PATH = re.compile(r"^/api/models/[^/]+/[^/]+/commit/")


def git_blob_sha1(data: bytes) -> str:
    """The oid git (and the Hub) gives a regular file: sha1 over a ``blob <len>\\0`` header and the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubHTTPError(Exception):
    """Raised inside a handler; turned into a JSON error answer with an optional ``X-Error-Code``."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}
        self.extra = extra or {}  # more JSON fields for the error body


class _DropConnection(Exception):
    """Raised by a released stall: the handler closes the connection without answering (as a dead server)."""


@dataclass
class Faults:
    """Fault injection for tests of what clients do when the Hub fails part-way (every fault is off by default).

    ``stall_download=PATH``: a ``resolve`` GET of PATH (any repo and revision) sends its headers, which
    announce the whole file, and the first ``stall_bytes`` bytes of it, then stalls.
    ``stall_commit=True``: a commit POST stalls after reading ``stall_bytes`` bytes of its body, before anything
    is stored, so the branch stays at its old commit.
    A stall calls ``on_stall(what)`` (``main`` prints ``stalled: WHAT``; by default ``stalled`` is set), then
    waits for ``release`` (``LocalHub.stop`` sets it; in a server process nothing does: kill the process).
    A released stall closes the connection without answering and without storing anything.

    ``hold_download=PATH``, ``hold_until=N``: a ``resolve`` GET of PATH waits until N HEAD requests for PATH
    have arrived (the metadata request every ``hf_hub_download`` sends before it downloads), so N clients are
    inside their download at the same moment; if they have not all come within ``hold_timeout`` seconds the
    GET answers 500, so a test whose clients never overlapped fails instead of passing by luck.
    """

    stall_download: str | None = None
    stall_commit: bool = False
    stall_bytes: int = 65536
    hold_download: str | None = None
    hold_until: int = 0
    hold_timeout: float = 60.0
    on_stall: Any = None  # callable(what: str); None: set `stalled`
    stalled: threading.Event = field(default_factory=threading.Event, repr=False)
    release: threading.Event = field(default_factory=threading.Event, repr=False)
    heads: int = field(default=0, init=False)  # HEAD requests seen for hold_download
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)

    def stall(self, what: str) -> None:
        """Report the stall, wait until released, then drop the connection."""
        (self.on_stall or (lambda _what: self.stalled.set()))(what)
        self.release.wait()
        raise _DropConnection(what)

    def saw_head(self, path: str) -> None:
        if path == self.hold_download:
            with self._cond:
                self.heads += 1
                self._cond.notify_all()

    def hold(self, path: str) -> None:
        if path != self.hold_download:
            return
        with self._cond:
            if not self._cond.wait_for(lambda: self.heads >= self.hold_until, timeout=self.hold_timeout):
                raise HubHTTPError(
                    500,
                    f"fault hold: {self.heads} of {self.hold_until} clients asked for {path} "
                    f"within {self.hold_timeout} s",
                )


@dataclass
class Commit:
    oid: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    files: dict[str, str]  # path -> sha256 of the blob


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    refs: dict[str, str] = field(default_factory=dict)  # "main", "refs/pr/1", ... -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    next_pr: int = 1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class HubState:
    """Repos, commits and blobs behind one lock. Blobs live on disk under ``data_dir/blobs``."""

    def __init__(self, data_dir: Path, tokens: dict[str, dict[str, str]]) -> None:
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.data_dir / "state.json"
        self.tokens = tokens  # token -> {"user": name, "role": "write" | "read"}
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self._load()

    # -- persistence (so `python -m ltzoo.testing.hub_server --data DIR` survives a restart) --
    def _load(self) -> None:
        if not self.state_file.exists():
            return
        raw = json.loads(self.state_file.read_text())
        for item in raw["repos"]:
            commits = {oid: Commit(**c) for oid, c in item.pop("commits").items()}
            repo = Repo(**item, commits=commits)
            self.repos[repo.repo_id] = repo

    def _save(self) -> None:
        payload = {
            "repos": [
                {
                    **{k: v for k, v in vars(r).items() if k != "commits"},
                    "commits": {o: vars(c) for o, c in r.commits.items()},
                }
                for r in self.repos.values()
            ]
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.state_file)

    # -- blobs --
    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_dir / digest
        if not path.exists():
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return digest

    def blob(self, digest: str) -> bytes:
        return (self.blob_dir / digest).read_bytes()

    def blob_size(self, digest: str) -> int:
        return (self.blob_dir / digest).stat().st_size

    # -- repos and revisions --
    def create_repo(self, repo_id: str, private: bool, author: str) -> Repo:
        gitattributes = self.put_blob(
            b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.onnx filter=lfs diff=lfs merge=lfs -text\n"
        )
        repo = Repo(repo_id=repo_id, private=private, created_at=_now())
        # Like the Hub, a new repo starts with a system commit holding `.gitattributes`, so `main` exists.
        first = self._make_commit([], "initial commit", "", "system", {".gitattributes": gitattributes})
        repo.commits[first.oid] = first
        repo.refs["main"] = first.oid
        self.repos[repo_id] = repo
        self._save()
        return repo

    def _make_commit(self, parents: list[str], title: str, message: str, author: str, files: dict[str, str]) -> Commit:
        seed = json.dumps([parents, title, message, sorted(files.items()), time.time_ns(), uuid.uuid4().hex])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        return Commit(oid=oid, parents=parents, title=title, message=message, author=author, date=_now(), files=files)

    def resolve(self, repo: Repo, revision: str) -> Commit:
        if revision in repo.refs:
            return repo.commits[repo.refs[revision]]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in repo.refs:
            return repo.commits[repo.refs[revision[len("refs/heads/") :]]]
        if revision in repo.commits:
            return repo.commits[revision]
        raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class HubHandler(BaseHTTPRequestHandler):
    """One request. The route table is in :meth:`_route`; every answer goes through :meth:`_send`."""

    server_version = "ltzoo-local-hub/1.0"
    protocol_version = "HTTP/1.1"
    state: HubState  # set on the subclass made by LocalHub
    faults: Faults  # likewise

    # Quiet by default: the access log would otherwise interleave with pytest output.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if os.environ.get("LTZOO_HUB_SERVER_LOG"):
            super().log_message(format, *args)

    # -- plumbing --
    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{self.headers.get('Host', f'{host}:{port:d}')}"

    def _body(self) -> bytes:
        return self._raw_body

    def _json_body(self) -> Any:
        body = self._body()
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise HubHTTPError(400, "request body is not valid JSON") from None

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _send_error(self, err: HubHTTPError) -> None:
        headers = dict(err.headers)
        if err.error_code:
            headers["X-Error-Code"] = err.error_code
        headers["X-Error-Message"] = err.message
        self._send(err.status, json.dumps({"error": err.message, **err.extra}).encode(), headers)

    def _handle(self) -> None:
        # Read the whole body first, even for requests that fail early: with HTTP/1.1 keep-alive an
        # unread body would be parsed as the next request on the connection. (A stalled commit reads only
        # part of it; its connection is never reused.)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if self.faults.stall_commit and self.command == "POST" and _COMMIT_PATH.match(urlsplit(self.path).path):
                self.rfile.read(min(self.faults.stall_bytes, length))  # part of the upload, then nothing more
                self.faults.stall("commit")
            self._raw_body = self.rfile.read(length) if length else b""
            self._route()
        except HubHTTPError as err:
            self._send_error(err)
        except _DropConnection:
            self.close_connection = True  # no answer: the client sees the connection die
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # a server bug must show up as a 500, not a hung client
            self._send_error(HubHTTPError(500, f"internal error: {type(exc).__name__}: {exc}"))

    do_GET = do_HEAD = do_POST = _handle

    # -- auth --
    def _token(self) -> str | None:
        header = self.headers.get("Authorization", "")
        return header[len("Bearer ") :].strip() if header.startswith("Bearer ") else None

    def _reader(self) -> dict[str, str] | None:
        """The caller for a read: None when anonymous; an invalid token is refused as the Hub does."""
        token = self._token()
        if token is None:
            return None
        user = self.state.tokens.get(token)
        if user is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        return user

    def _writer(self, namespace: str | None = None) -> dict[str, str]:
        token = self._token()
        if token is None:
            raise HubHTTPError(401, "You must be authenticated to write: send 'Authorization: Bearer <token>'")
        user = self.state.tokens.get(token)
        if user is None:
            raise HubHTTPError(403, "Invalid token: it is not allowed to write")
        if user.get("role") != "write":
            raise HubHTTPError(403, "This token has read access only")
        if namespace is not None and namespace != user["user"] and namespace not in user.get("orgs", []):
            raise HubHTTPError(403, f"You don't have the rights to write in the namespace {namespace!r}")
        return user

    def _repo(self, repo_id: str, *, write: bool = False) -> Repo:
        user = self._writer(repo_id.split("/")[0]) if write else self._reader()
        repo = self.state.repos.get(repo_id)
        visible = repo is not None and (not repo.private or (user is not None and _may_read(user, repo_id)))
        if not visible:
            raise HubHTTPError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    # -- routing --
    def _route(self) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        method = self.command
        if parts[:2] == ["api", "whoami-v2"] and method == "GET":
            return self._whoami()
        if parts[:2] == ["api", "agent-harnesses"] and method == "GET":
            # huggingface_hub 2.x fetches this registry once a day from HF_ENDPOINT; an empty one detects nothing.
            return self._send_json({"standardEnvVars": [], "harnesses": {}})
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if parts == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._api_repo(f"{parts[2]}/{parts[3]}", parts[4:], method)
        # /{org}/{name}/resolve/{rev}/{path}
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        return self._not_found()

    def _not_found(self) -> None:
        raise HubHTTPError(404, f"no route for {self.command} {self.path}")

    def _api_repo(self, repo_id: str, rest: list[str], method: str) -> None:
        action = rest[0] if rest else ""
        if action == "" and method in ("GET", "HEAD"):
            return self._repo_info(repo_id, "main")
        if action == "revision" and len(rest) >= 2 and method in ("GET", "HEAD"):
            return self._repo_info(repo_id, "/".join(rest[1:]))
        if action == "tree" and len(rest) >= 2 and method == "GET":
            return self._tree(repo_id, rest[1], "/".join(rest[2:]))
        if action == "paths-info" and len(rest) == 2 and method == "POST":
            return self._paths_info(repo_id, rest[1])
        if action == "preupload" and len(rest) == 2 and method == "POST":
            return self._preupload(repo_id, rest[1])
        if action == "commit" and len(rest) == 2 and method == "POST":
            return self._commit(repo_id, rest[1])
        if action == "commits" and len(rest) == 2 and method == "GET":
            return self._list_commits(repo_id, rest[1])
        if action == "refs" and method == "GET":
            return self._refs(repo_id)
        if action == "branch" and len(rest) >= 2 and method == "POST":
            return self._create_branch(repo_id, "/".join(rest[1:]))
        return self._not_found()

    # -- endpoints --
    def _whoami(self) -> None:
        user = self._reader()
        if user is None:
            raise HubHTTPError(401, "Invalid user token: none was sent")
        self._send_json(
            {
                "type": "user",
                "name": user["user"],
                "fullname": user["user"],
                "orgs": [{"name": org, "type": "org"} for org in user.get("orgs", [])],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "local", "role": user.get("role", "read")},
                },
            }
        )

    def _validate_yaml(self) -> None:
        content = self._json_body().get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
            except yaml.YAMLError as exc:
                self._send_json({"errors": [{"message": f"YAML does not parse: {exc}"}], "warnings": []}, status=400)
                return
            if meta is not None and not isinstance(meta, dict):
                self._send_json(
                    {"errors": [{"message": "metadata must be a YAML mapping"}], "warnings": []}, status=400
                )
                return
        self._send_json({"errors": [], "warnings": []})

    def _create_repo(self) -> None:
        body = self._json_body()
        if (body.get("type") or "model") != "model":
            raise HubHTTPError(400, f"this stand-in serves model repos only, not {body.get('type')!r} repos")
        user = self._writer(body.get("organization"))
        namespace = body.get("organization") or user["user"]
        name = body.get("name") or ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise HubHTTPError(400, f"invalid repo name {name!r}")
        repo_id = f"{namespace}/{name}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = f"{self.base_url}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                # The Hub's 409 body carries the url: `create_repo(exist_ok=True)` reads it.
                raise HubHTTPError(409, "You already created this model repo", extra={"url": url})
            self.state.create_repo(repo_id, private, user["user"])
        self._send_json({"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _repo_info(self, repo_id: str, revision: str) -> None:
        with self.state.lock:
            repo = self._repo(repo_id)
            commit = self.state.resolve(repo, revision)
            files = dict(commit.files)
        card = _front_matter(self.state.blob(files["README.md"])) if "README.md" in files else {}
        info: dict[str, Any] = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []),
            "siblings": [{"rfilename": path} for path in sorted(files)],
            "modelId": repo_id,
        }
        for key in ("library_name", "pipeline_tag"):
            if key in card:
                info[key] = card[key]
        if card:
            info["cardData"] = card
        self._send_json(info)

    def _entry(self, path: str, digest: str) -> dict[str, Any]:
        data = self.state.blob(digest)
        return {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)}

    def _listing(self, files: dict[str, str], prefix: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, digest in sorted(files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base) :].split("/")
            # Every folder on the way is listed when recursive; only the first level otherwise.
            for depth in range(1, len(rest)):
                folder = base + "/".join(rest[:depth])
                entries.setdefault(
                    folder,
                    {"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0},
                )
                if not recursive:
                    break
            if recursive or len(rest) == 1:
                entries[path] = self._entry(path, digest)
        return list(entries.values())

    def _tree(self, repo_id: str, revision: str, path: str) -> None:
        with self.state.lock:
            files = dict(self.state.resolve(self._repo(repo_id), revision).files)
        if path and path.strip("/") not in files and not any(p.startswith(path.strip("/") + "/") for p in files):
            raise HubHTTPError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        self._send_json(self._listing(files, path, recursive))

    def _paths_info(self, repo_id: str, revision: str) -> None:
        body = self._body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        with self.state.lock:
            files = dict(self.state.resolve(self._repo(repo_id), revision).files)
        out = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                out.append(self._entry(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                out.append(
                    {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0}
                )
        self._send_json(out)

    def _preupload(self, repo_id: str, revision: str) -> None:
        body = self._json_body()
        with self.state.lock:
            repo = self._repo(repo_id, write=True)
            files = (
                dict(self.state.resolve(repo, revision).files)
                if revision in repo.refs or revision in repo.commits
                else {}
            )
            head = repo.refs.get(revision)
        answer = []
        for item in body.get("files", []):
            path = item["path"]
            # The remote oid lets the client skip files whose content did not change (as on the Hub).
            remote = git_blob_sha1(self.state.blob(files[path])) if path in files else None
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": remote})
        self._send_json({"files": answer, "commitOid": head})

    def _commit(self, repo_id: str, revision: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = self.query.get("create_pr", ["0"])[0] in ("1", "true")
        with self.state.lock:
            repo = self._repo(repo_id, write=True)
            user = self._writer(repo_id.split("/")[0])
            if revision not in repo.refs:
                raise HubHTTPError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
            head = repo.refs[revision]
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HubHTTPError(
                    412, f"A commit has happened since {parent} on {revision} (now at {head}); refresh and try again"
                )
            files = dict(repo.commits[head].files)
            for line in lines[1:]:
                self._apply(line, files)
            commit = self.state._make_commit(
                [head], header.get("summary") or "commit", header.get("description") or "", user["user"], files
            )
            repo.commits[commit.oid] = commit
            extra: dict[str, Any] = {}
            if create_pr:
                number = repo.next_pr
                repo.next_pr += 1
                repo.refs[f"refs/pr/{number}"] = commit.oid
                extra["pullRequestUrl"] = f"{self.base_url}/{repo_id}/discussions/{number}"
            else:
                repo.refs[revision] = commit.oid
            self.state._save()
        url = f"{self.base_url}/{repo_id}/commit/{commit.oid}"
        self._send_json({"success": True, "commitOid": commit.oid, "commitUrl": url, **extra})

    def _apply(self, line: dict[str, Any], files: dict[str, str]) -> None:
        key, value = line.get("key"), line.get("value", {})
        path = str(value.get("path", "")).strip("/")
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubHTTPError(400, f"unsupported encoding {value.get('encoding')!r} for {path}")
            files[path] = self.state.put_blob(base64.b64decode(value["content"]))
        elif key == "deletedFile":
            if path not in files:
                raise HubHTTPError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del files[path]
        else:
            raise HubHTTPError(400, f"unsupported commit operation {key!r}")

    def _list_commits(self, repo_id: str, revision: str) -> None:
        with self.state.lock:
            repo = self._repo(repo_id)
            commit: Commit | None = self.state.resolve(repo, revision)
            history = []
            while commit is not None:
                history.append(
                    {
                        "id": commit.oid,
                        "title": commit.title,
                        "message": commit.message,
                        "authors": [{"user": commit.author}],
                        "date": commit.date,
                    }
                )
                commit = repo.commits[commit.parents[0]] if commit.parents else None
        self._send_json(history)

    def _refs(self, repo_id: str) -> None:
        with self.state.lock:
            refs = dict(self._repo(repo_id).refs)
        branches = [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
            for n, c in refs.items()
            if not n.startswith("refs/")
        ]
        prs = [{"name": n, "ref": n, "targetCommit": c} for n, c in refs.items() if n.startswith("refs/pr/")]
        body: dict[str, Any] = {"branches": branches, "tags": [], "converts": []}
        if self.query.get("include_prs", ["0"])[0] in ("1", "true"):
            body["pullRequests"] = prs
        self._send_json(body)

    def _create_branch(self, repo_id: str, branch: str) -> None:
        with self.state.lock:
            repo = self._repo(repo_id, write=True)
            if branch in repo.refs:
                raise HubHTTPError(409, f"Reference already exists: refs/heads/{branch}")
            start = self._json_body().get("startingPoint") or "main"
            repo.refs[branch] = self.state.resolve(repo, start).oid
            self.state._save()
        self._send_json({})

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        with self.state.lock:
            repo = self._repo(repo_id)
            commit = self.state.resolve(repo, revision)
            digest = commit.files.get(path)
        if digest is None:
            raise HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        data = self.state.blob(digest)
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_sha1(data)}"'}
        if self.command == "HEAD":
            self.faults.saw_head(path)
        elif path == self.faults.stall_download:
            # Headers announcing the whole file, part of it, then nothing: a download cut off mid-way.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data[: self.faults.stall_bytes])
            self.wfile.flush()
            self.faults.stall(f"download {path}")
        else:
            self.faults.hold(path)
        self._send(200, data, headers, content_type="application/octet-stream")


def _may_read(user: dict[str, str], repo_id: str) -> bool:
    namespace = repo_id.split("/")[0]
    return namespace == user["user"] or namespace in user.get("orgs", [])


def _front_matter(readme: bytes) -> dict[str, Any]:
    match = re.match(r"^---\n(.*?)\n---", readme.decode("utf-8", "replace"), re.S)
    if not match:
        return {}
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


class LocalHub:
    """A running server: ``url``, ``stop()``; also a context manager. ``port=0`` picks a free port.
    ``faults`` (default: none) injects the failures described in :class:`Faults`."""

    def __init__(
        self,
        data_dir: str | Path,
        tokens: dict[str, dict[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
    ) -> None:
        state = HubState(Path(data_dir), tokens or {})
        self.faults = faults or Faults()
        handler = type("BoundHubHandler", (HubHandler,), {"state": state, "faults": self.faults})
        self.state = state
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        # A short poll interval makes stop() (and so each test's teardown) take milliseconds, not 0.5 s.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
        )

    def start(self) -> LocalHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.faults.release.set()  # a stalled request drops its connection instead of hanging on
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Hub-compatible server (a stand-in for huggingface.co).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", required=True, help="the write token clients must send")
    parser.add_argument("--user", default="ltzoo", help="user the token belongs to")
    parser.add_argument("--orgs", default="ltzoo-org", help="comma-separated organisations the user may write to")
    parser.add_argument("--data", default=None, help="state directory (default: a new temporary one)")
    faults = parser.add_argument_group(
        "fault injection, for tests (see Faults)", "a stall prints 'stalled: WHAT' and waits to be killed"
    )
    faults.add_argument("--stall-download", metavar="PATH", help="stall a download of PATH after --stall-bytes bytes")
    faults.add_argument(
        "--stall-commit", action="store_true", help="stall a commit after reading --stall-bytes bytes of it"
    )
    faults.add_argument("--stall-bytes", type=int, default=Faults.stall_bytes)
    args = parser.parse_args(argv)
    data = args.data or tempfile.mkdtemp(prefix="ltzoo-hub-")
    orgs = [o for o in args.orgs.split(",") if o]
    injected = Faults(
        stall_download=args.stall_download,
        stall_commit=args.stall_commit,
        stall_bytes=args.stall_bytes,
        on_stall=lambda what: print(f"stalled: {what}", flush=True),
    )
    hub = LocalHub(
        data,
        {args.token: {"user": args.user, "orgs": orgs, "role": "write"}},
        host=args.host,
        port=args.port,
        faults=injected,
    )
    print(hub.url, flush=True)
    try:
        hub.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.httpd.server_close()


if __name__ == "__main__":
    main()
