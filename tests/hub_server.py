"""A small Hub-protocol HTTP server for tests (not part of the installed package).

No Hub server that accepts uploads can be installed here, so the tests run the real
`huggingface_hub` and `datasets` clients against this one. It implements the routes those
clients call, with the Hub's answers: repos/create, repo info (+ revision), branch, preupload,
LFS batch + PUT, commit (NDJSON, parentCommit, create_pr), tree, paths-info, resolve
(HEAD/GET with X-Repo-Commit, ETag, X-Linked-Etag/Size, ranges), validate-yaml, whoami.
Repos keep every commit; refs are branches and `refs/pr/N`. Writes and wrong tokens are
refused like the Hub does; faults (status codes, dropped connections) can be injected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".parquet", ".keras", ".h5", ".npz", ".png", ".zip", ".arrow")
LFS_MIN_SIZE = 10 * 1024 * 1024
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A file in a commit: its git oid, size, and sha256 when stored in LFS."""

    oid: str
    size: int
    lfs: str | None


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, Entry]


@dataclass
class Repo:
    kind: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    prs: int = 0

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        sha = self.refs.get(revision, revision)
        return self.commits.get(sha)


@dataclass
class Fault:
    """Answer the `nth` request whose "METHOD path" matches `pattern` with a failure."""

    pattern: str
    nth: int = 1
    status: int = 500
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    seen: int = 0
    fired: int = 0


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubState:
    def __init__(self, token: str, user: str) -> None:
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # git oid -> content of regular files
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.faults: list[Fault] = []
        self.log: list[str] = []
        self.lock = threading.RLock()

    def repo(self, kind: str, repo_id: str, *, authorized: bool) -> Repo:
        repo = self.repos.get((kind, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def new_commit(
        self, repo: Repo, parent: Commit | None, message: str, files: dict[str, Entry]
    ) -> Commit:
        parent_sha = parent.sha if parent else ""
        seed = f"{repo.repo_id}{parent_sha}{message}{len(repo.commits)}{sorted(files.items())}"
        commit = Commit(
            hashlib.sha1(seed.encode()).hexdigest(), parent.sha if parent else None, message, files
        )
        repo.commits[commit.sha] = commit
        return commit

    def create_repo(self, kind: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(kind, repo_id, private)
        initial = self.new_commit(repo, None, "initial commit", {})
        repo.refs["main"] = initial.sha
        self.repos[(kind, repo_id)] = repo
        return repo

    def content(self, entry: Entry) -> bytes:
        return self.lfs[entry.lfs] if entry.lfs else self.blobs[entry.oid]

    def main_history(self, kind: str, repo_id: str) -> list[Commit]:
        """Commits on main, newest first (for tests)."""
        repo = self.repos[(kind, repo_id)]
        commits, sha = [], repo.refs["main"]
        while sha:
            commits.append(repo.commits[sha])
            sha = repo.commits[sha].parent or ""
        return commits

    def files(self, kind: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path -> content at a revision (for tests)."""
        repo = self.repos[(kind, repo_id)]
        commit = self.commit(repo, revision)
        return {path: self.content(entry) for path, entry in commit.files.items()}


def _entry_json(path: str, entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.lfs, "size": entry.size, "pointerSize": 134}
    return item


def _directories(files: dict[str, Entry]) -> set[str]:
    return {
        "/".join(parts[:i]) for parts in (p.split("/") for p in files) for i in range(1, len(parts))
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status,
            json.dumps(data).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header:
            return False
        if header != f"Bearer {self.server.state.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    def _require_token(self) -> None:
        if not self._authorized():
            raise HubError(401, "You must be authenticated to do this")

    def _handle(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        body = self._body() if self.command in ("POST", "PUT") else b""
        with state.lock:
            state.log.append(f"{self.command} {url.path}")
            for fault in state.faults:
                if fault.fired < fault.times and re.search(
                    fault.pattern, f"{self.command} {url.path}"
                ):
                    fault.seen += 1
                    if fault.seen >= fault.nth:
                        fault.fired += 1
                        if fault.drop:
                            self.close_connection = True
                            self.connection.close()
                            return
                        self._json(fault.status, {"error": "injected fault"}, fault.headers)
                        return
            try:
                self._route(url.path, parse_qs(url.query), body)
            except HubError as err:
                headers = {"X-Error-Message": " ".join(err.message.split())}
                if err.code:
                    headers["X-Error-Code"] = err.code
                self._json(err.status, {"error": err.message}, headers)

    do_GET = do_HEAD = do_POST = do_PUT = _handle  # noqa: N815 - http.server's names

    # -- routing --------------------------------------------------------------------------
    def _route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.server.state
        if path == "/api/whoami-v2":
            self._require_token()
            self._json(
                200,
                {"type": "user", "name": state.user, "orgs": [], "auth": {"type": "access_token"}},
            )
            return
        if path == "/api/repos/create" and self.command == "POST":
            self._create_repo(json.loads(body))
            return
        if path == "/api/validate-yaml" and self.command == "POST":
            self._validate_yaml(json.loads(body))
            return
        if path.startswith("/lfs-upload/") and self.command == "PUT":
            oid = path.rsplit("/", 1)[1]
            if hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, f"LFS object {oid} does not match its content")
            state.lfs[oid] = body
            self._send(200)
            return
        api = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+(?:/[^/]+)?)(?:/(.*))?", path)
        if api:
            kind, repo_id, rest = _TYPES[api.group(1)], api.group(2), api.group(3) or ""
            for name in ("revision", "preupload", "commit", "tree", "paths-info", "branch"):
                if rest == name or rest.startswith(name + "/"):
                    self._repo_route(name, kind, repo_id, rest[len(name) + 1 :], query, body)
                    return
            if rest == "":
                self._repo_route("revision", kind, repo_id, "main", query, body)
                return
        lfs = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if lfs:
            self._lfs_batch(json.loads(body))
            return
        resolve = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            kind = {"datasets/": "dataset", "spaces/": "space"}.get(resolve.group(1) or "", "model")
            self._resolve(
                kind, resolve.group(2), unquote(resolve.group(3)), unquote(resolve.group(4))
            )
            return
        raise HubError(
            404, f"Sorry, we can't find the page you are looking for: {self.command} {path}"
        )

    def _repo_route(
        self,
        name: str,
        kind: str,
        repo_id: str,
        rest: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> None:
        state = self.server.state
        authorized = self._authorized()
        repo = state.repo(kind, repo_id, authorized=authorized)
        if name == "revision":
            commit = state.commit(repo, rest)
            siblings = [
                {"rfilename": p, "size": e.size, "blobId": e.oid}
                for p, e in sorted(commit.files.items())
            ]
            self._json(
                200,
                {
                    "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                    "id": repo_id,
                    "author": repo_id.split("/")[0],
                    "sha": commit.sha,
                    "private": repo.private,
                    "gated": False,
                    "disabled": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "lastModified": "2026-01-01T00:00:00.000Z",
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "siblings": siblings,
                },
            )
            return
        if self.command == "POST" and name != "paths-info":
            self._require_token()
        if name == "branch":
            if rest in repo.refs:
                raise HubError(409, f"Reference {rest} already exists")
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            repo.refs[unquote(rest)] = state.commit(repo, start).sha
            self._json(200, {})
        elif name == "preupload":
            commit = state.commit(repo, rest)
            files = []
            for item in json.loads(body)["files"]:
                lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE
                existing = commit.files.get(item["path"])
                oid = None if existing is None else (existing.lfs or existing.oid)
                files.append(
                    {
                        "path": item["path"],
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        "oid": oid,
                    }
                )
            self._json(200, {"files": files})
        elif name == "commit":
            self._commit(repo, unquote(rest), body, query.get("create_pr") == ["1"])
        elif name == "tree":
            revision, _, sub = rest.partition("/")
            self._tree(
                state.commit(repo, revision), unquote(sub), query.get("recursive") == ["true"]
            )
        elif name == "paths-info":
            commit = state.commit(repo, rest)
            form = parse_qs(body.decode())
            paths = form.get("paths", []) or json.loads(body or b"{}").get("paths", [])
            directories = _directories(commit.files)
            found = [
                _entry_json(p, commit.files[p])
                if p in commit.files
                else {"type": "directory", "oid": "0", "path": p}
                for p in paths
                if p in commit.files or p in directories
            ]
            self._json(200, found)

    def _create_repo(self, data: dict[str, Any]) -> None:
        self._require_token()
        state = self.server.state
        kind = data.get("type") or "model"
        repo_id = f"{data.get('organization') or state.user}/{data['name']}"
        url = f"{self.server.endpoint}/{_PREFIX[kind]}{repo_id}"
        if (kind, repo_id) in state.repos:
            self._json(409, {"error": "You already created this repo", "url": url})
            return
        # huggingface_hub 1.x+ sends "visibility"; older clients sent "private".
        private = data.get("visibility") == "private" or bool(data.get("private"))
        state.create_repo(kind, repo_id, private)
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self, data: dict[str, Any]) -> None:
        """Check a README's front matter the way the Hub does before a commit (a subset)."""
        errors = []
        match = re.match(r"^---\n(.*?)\n---\s*\n", data["content"], re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            meta, errors = {}, [f"Invalid YAML: {' '.join(str(err).split())}"]
        if not isinstance(meta, dict):
            meta, errors = {}, ["The metadata must be a mapping"]
        for model in meta.get("model-index", []):
            for result in model.get("results", []):
                if not {"task", "dataset", "metrics"} <= result.keys():
                    errors.append("model-index results need task, dataset and metrics")
                elif not all({"type", "value"} <= m.keys() for m in result["metrics"]):
                    errors.append("model-index metrics need type and value")
        self._json(
            400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []}
        )

    def _lfs_batch(self, data: dict[str, Any]) -> None:
        self._require_token()
        objects = []
        for obj in data["objects"]:
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.server.state.lfs:
                item["actions"] = {
                    "upload": {"href": f"{self.server.endpoint}/lfs-upload/{obj['oid']}"}
                }
            objects.append(item)
        self._json(200, {"transfer": "basic", "objects": objects})

    def _commit(self, repo: Repo, revision: str, body: bytes, create_pr: bool) -> None:
        state = self.server.state
        parent = state.commit(repo, revision)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != parent.sha:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(parent.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                content = base64.b64decode(value["content"])
                state.blobs[git_blob_oid(content)] = content
                files[path] = Entry(git_blob_oid(content), len(content), None)
            elif key == "lfsFile":
                if value["oid"] not in state.lfs:
                    raise HubError(422, f"LFS file {path} ({value['oid']}) was not uploaded")
                pointer = (
                    "version https://git-lfs.github.com/spec/v1\n"
                    f"oid sha256:{value['oid']}\nsize {value['size']}\n"
                )
                files[path] = Entry(git_blob_oid(pointer.encode()), value["size"], value["oid"])
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
                del files[path]
            elif key == "deletedFolder":
                files = {p: e for p, e in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:
                raise HubError(400, f"Unknown commit operation {key}")
        commit = state.new_commit(repo, parent, header["summary"], files)
        prefix = f"{self.server.endpoint}/{_PREFIX[repo.kind]}{repo.repo_id}"
        answer: dict[str, Any] = {
            "commitUrl": f"{prefix}/commit/{commit.sha}",
            "commitOid": commit.sha,
        }
        if create_pr:
            repo.prs += 1
            repo.refs[f"refs/pr/{repo.prs}"] = commit.sha
            answer["pullRequestUrl"] = f"{prefix}/discussions/{repo.prs}"
        else:
            repo.refs[revision if revision in repo.refs else "main"] = commit.sha
        self._json(200, answer)

    def _tree(self, commit: Commit, sub: str, recursive: bool) -> None:
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        directories = _directories(commit.files)
        if prefix and prefix.rstrip("/") not in directories:
            raise HubError(404, f"{sub} does not exist", "EntryNotFound")
        items = []
        for d in sorted(directories):
            if d.startswith(prefix) and (recursive or "/" not in d[len(prefix) :]):
                items.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": d})
        for path, entry in sorted(commit.files.items()):
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :]):
                items.append(_entry_json(path, entry))
        self._json(200, items)

    def _resolve(self, kind: str, repo_id: str, revision: str, path: str) -> None:
        state = self.server.state
        repo = state.repo(kind, repo_id, authorized=self._authorized())
        commit = state.commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        content = state.content(entry)
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.oid}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.lfs}"', "X-Linked-Size": str(entry.size)})
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged and self.command == "GET":
            start = int(ranged.group(1))
            end = min(int(ranged.group(2) or len(content) - 1), len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            self._send(206, content[start : end + 1], headers)
            return
        self._send(200, content, headers)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str, user: str = "tester") -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = HubState(token, user)
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
