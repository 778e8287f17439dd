"""A model hub of our own on 127.0.0.1 (ephemeral port) that speaks enough of the Hugging Face and ModelScope HTTP
APIs for the real `huggingface_hub` and `modelscope` clients, with fault injection:

- `drop_after[path] = n`: the next GET of `path` sends n body bytes, then the connection is closed (once);
- `stall_after[path] = n`: every GET of `path` sends n body bytes, then waits for `release` (or the client to go);
- `corrupt`: paths served with one byte flipped while the listing keeps the true hash;
- `broken`: paths whose downloads answer HTTP 500;
- `listed_twice`: paths that appear twice in the file listings (as a paginated listing that repeats a page can).

Every request is recorded in `requests` (method, path, Range header, status) for the tests to assert on."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    status: int = 0


@dataclass
class Repo:
    files: dict[str, bytes]
    revisions: dict[str, str]  # branch/tag name -> 40-hex commit


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith((".safetensors", ".bin", ".gguf"))


@dataclass
class LocalHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    listed_twice: set[str] = field(default_factory=set)
    requests: list[Logged] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)  # set once a stalled transfer is waiting

    def add_repo(self, repo_id: str, files: dict[str, bytes], tags: tuple[str, ...] = ()) -> str:
        commit = hashlib.sha1((repo_id + "".join(sorted(files))).encode()).hexdigest()
        names = {"main": commit, "master": commit, **{t: commit for t in tags}}
        self.repos[repo_id] = Repo(dict(files), names)
        return commit

    def start(self) -> LocalHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def file_gets(self, path: str) -> list[Logged]:
        return [r for r in self.requests if r.method == "GET" and r.path == path]

    def resolve(self, repo_id: str, revision: str) -> tuple[Repo | None, str | None]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, None
        if revision in repo.revisions:
            return repo, repo.revisions[revision]
        if revision in repo.revisions.values():
            return repo, revision
        return repo, None


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # -- routing ----------------------------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), {k: v[0] for k, v in parse_qs(parts.query).items()}
        routes = [
            (r"^/api/models/([^/]+/[^/]+)/revision/(.+)$", self._hf_info),
            (r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", self._hf_tree),
            (r"^/api/v1/models/([^/]+/[^/]+)/repo/files$", self._ms_files),
            (r"^/api/v1/models/([^/]+/[^/]+)/revisions$", self._ms_revisions),
            (r"^/api/v1/models/([^/]+/[^/]+)/repo$", self._ms_file),
            (r"^/cdn/([^/]+/[^/]+)/([^/]+)/(.+)$", self._hf_cdn),
            (r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self._hf_file),
        ]
        for pattern, handler in routes:
            match = re.match(pattern, path)
            if match:
                handler(*match.groups(), query=query, head=head)
                return
        self._json(404, {"error": "not found"}, record=path)

    # -- Hugging Face -------------------------------------------------------------------------------------------
    def _hf_error(self, code: str, status: int = 404, record: str = "") -> None:
        self._json(status, {"error": code}, headers={"X-Error-Code": code}, record=record)

    def _hf_info(self, repo_id: str, revision: str, **_: object) -> None:
        repo, commit = self.hub.resolve(repo_id, revision)
        if repo is None:
            return self._hf_error("RepoNotFound", 401, self.path)
        if commit is None:
            return self._hf_error("RevisionNotFound", 404, self.path)
        self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                         "siblings": [{"rfilename": name} for name in repo.files]}, record=self.path)

    def _hf_tree(self, repo_id: str, revision: str, sub: str | None, **_: object) -> None:
        repo, commit = self.hub.resolve(repo_id, revision)
        if repo is None:
            return self._hf_error("RepoNotFound", 401, self.path)
        if commit is None:
            return self._hf_error("RevisionNotFound", 404, self.path)
        entries = []
        for name, data in repo.files.items():
            if sub and not name.startswith(sub.rstrip("/") + "/"):
                continue
            entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
            if is_lfs(name):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.extend([entry] * (2 if name in self.hub.listed_twice else 1))
        self._json(200, entries, record=self.path)

    def _hf_file(self, repo_id: str, revision: str, name: str, head: bool, **_: object) -> None:
        repo, commit = self.hub.resolve(repo_id, revision)
        if repo is None:
            return self._hf_error("RepoNotFound", 401, name)
        if commit is None:
            return self._hf_error("RevisionNotFound", 404, name)
        if name not in repo.files:
            return self._hf_error("EntryNotFound", 404, name)
        data = repo.files[name]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_sha1(data)}"'}
        if is_lfs(name):  # like the real hub: LFS files redirect to a CDN, the hash travels in X-Linked-Etag
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                            "X-Linked-Size": str(len(data)), "Location": f"/cdn/{repo_id}/{commit}/{name}"})
            self.hub.requests.append(Logged(self.command, "redirect:" + name, self.headers.get("Range"), 302))
            self.send_response(302)
            self.send_header("Content-Length", "0")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            return
        self._send_file(name, data, headers, head)

    def _hf_cdn(self, repo_id: str, commit: str, name: str, head: bool, **_: object) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or commit not in repo.revisions.values() or name not in repo.files:
            return self._json(404, {"error": "no such object"}, record=name)
        self._send_file(name, repo.files[name], {"ETag": f'"{hashlib.sha256(repo.files[name]).hexdigest()}"'}, head)

    # -- ModelScope ---------------------------------------------------------------------------------------------
    def _ms_error(self, status: int, message: str) -> None:
        self._json(status, {"Code": 10010205001, "Message": message, "Success": False, "RequestId": "local"},
                   record=self.path)

    def _ms_files(self, repo_id: str, query: dict[str, str], **_: object) -> None:
        repo, commit = self.hub.resolve(repo_id, query.get("Revision", "master"))
        if repo is None:
            return self._ms_error(404, f"model {repo_id} does not exist")
        if commit is None:
            return self._ms_error(404, f"revision {query.get('Revision')} does not exist")
        root = (query.get("Root") or "").strip("/")
        files = [{"Name": name.rsplit("/", 1)[-1], "Path": name, "Type": "blob", "Size": len(data),
                  "Sha256": hashlib.sha256(data).hexdigest(), "Revision": commit}
                 for name, data in repo.files.items() if not root or name.startswith(root + "/")]
        files += [f for f in files if f["Path"] in self.hub.listed_twice]
        self._json(200, {"Code": 200, "Success": True, "Data": {"Files": files}}, record=self.path)

    def _ms_revisions(self, repo_id: str, **_: object) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._ms_error(404, f"model {repo_id} does not exist")
        branches = [{"Revision": name, "CreatedAt": 1700000000} for name in repo.revisions if name != "main"]
        self._json(200, {"Code": 200, "Success": True, "Data": {"RevisionMap": {"Branches": branches, "Tags": []}}},
                   record=self.path)

    def _ms_file(self, repo_id: str, query: dict[str, str], head: bool, **_: object) -> None:
        repo, commit = self.hub.resolve(repo_id, query.get("Revision", "master"))
        name = query.get("FilePath", "")
        if repo is None or commit is None or name not in repo.files:
            return self._ms_error(404, f"file {name} does not exist")
        self._send_file(name, repo.files[name], {}, head)

    # -- transport ----------------------------------------------------------------------------------------------
    def _json(self, status: int, body: object, headers: dict[str, str] | None = None, record: str = "") -> None:
        payload = json.dumps(body).encode()
        self.hub.requests.append(Logged(self.command, record or self.path, self.headers.get("Range"), status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_file(self, name: str, data: bytes, headers: dict[str, str], head: bool) -> None:
        hub = self.hub
        if name in hub.broken:
            self._json(500, {"error": "storage backend unavailable"}, record=name)
            return
        if name in hub.corrupt:
            data = data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
        start, end = 0, len(data) - 1
        status = 200
        wanted = self.headers.get("Range")
        match = re.match(r"bytes=(\d+)-(\d*)", wanted or "")
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data):
                self._json(416, {"error": "range not satisfiable"}, record=name)
                return
            status = 206
        body = data[start:end + 1]
        hub.requests.append(Logged(self.command, name, wanted, status))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        cut = hub.drop_after.pop(name, None)
        if cut is None and name in hub.stall_after:
            self.wfile.write(body[: hub.stall_after[name]])
            self.wfile.flush()
            hub.stalled.set()
            hub.release.wait(timeout=30)
            self.close_connection = True
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees a short body
            return
        self.wfile.write(body)
