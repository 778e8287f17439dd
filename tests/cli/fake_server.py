"""A stand-in for `vdeploy serve` (stdlib only) for the ps/run/stop tests: /v1/models, /metrics, and a streaming
/v1/chat/completions whose reply thinks first (reasoning_content) and then answers, echoing the turn count. It
registers itself the way serve does and exits on SIGTERM, without removing its record (ps must prune it)."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vdeploy.local_servers import registered, server_record

NAME = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self._send(json.dumps({"object": "list", "data": [{"id": NAME}]}).encode(), "application/json")
        else:
            self._send(b'# HELP x\nvdeploy:kv_cache_usage_perc{model_name="m"} 0.25\n', "text/plain")

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        turns = sum(m["role"] == "user" for m in request["messages"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for delta in ({"reasoning_content": "pondering"}, {"content": "answer "}, {"content": f"turn {turns}"}):
            event = {"choices": [{"index": 0, "delta": delta}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
port = server.server_address[1]
record = server_record(model=f"/models/{NAME}", served_model_name=NAME, host="127.0.0.1", port=port, tp=2, pp=1)
with registered(record):
    print(port, flush=True)
    server.serve_forever()
