"""A webhook receiver in its own process, for tests and the benchmark: it verifies every
delivery's signature with `standardwebhooks`, counts deliveries by `webhook-id`, and can be told
to fail (500), hang, answer 410 or 429, or accept again. POST /redirect answers 307 to /hook.

    python tests/webhook_receiver.py --port 8123 --secret whsec_... [--tls CERT KEY]

Control (JSON): POST /_mode {"mode": "ok|fail|hang|gone|throttle", "secrets": [...]},
GET /_seen -> {"deliveries": [{"id", "type", "verified", "at", "answered"}], "counts": {id: n}}.
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

STATE = {"mode": "ok", "secrets": [], "seen": [], "lock": threading.Lock()}
ANSWERS = {"ok": 204, "fail": 500, "gone": 410, "throttle": 429, "reject": 400, "long": 500,
           "sloppy": 204}  # sloppy: a 204 that sends a body anyway (against HTTP)
LONG = b"x" * 100_000  # mode "long": a 500 with a body far past any cap


def verified(headers, body: bytes) -> bool:
    for secret in STATE["secrets"]:
        try:
            Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
            return True
        except Exception:  # noqa: BLE001 - any failure to verify is "not verified"
            continue
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/_seen":
            return self._json(404, {})
        with STATE["lock"]:
            seen = list(STATE["seen"])
        counts = {}
        for delivery in seen:
            if 200 <= delivery["answered"] < 300:
                counts[delivery["id"]] = counts.get(delivery["id"], 0) + 1
        self._json(200, {"deliveries": seen, "counts": counts})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/_mode":
            change = json.loads(body)
            with STATE["lock"]:
                STATE["mode"] = change.get("mode", STATE["mode"])
                STATE["secrets"] = change.get("secrets", STATE["secrets"])
                if change.get("clear"):
                    STATE["seen"].clear()
            return self._json(200, {"mode": STATE["mode"]})
        if self.path == "/redirect":  # offers a redirect to /hook; a follower would be seen there
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/hook")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        mode = STATE["mode"]
        answered = 0 if mode == "hang" else ANSWERS.get(mode, 500)
        payload = {}
        try:
            payload = json.loads(body)
        except ValueError:
            pass
        with STATE["lock"]:
            STATE["seen"].append({"id": self.headers.get("webhook-id"), "path": self.path,
                                  "type": payload.get("type"), "data": payload.get("data"),
                                  "verified": verified(self.headers, body),
                                  "signatures": len(self.headers.get("webhook-signature",
                                                                     "").split()),
                                  "at": time.time(), "answered": answered})
        if mode == "hang":  # seen (and counted as not answered), then no answer for 30 s
            time.sleep(30)
            return
        extra = {"Retry-After": "1"} if mode == "throttle" else {}
        body = (LONG if mode == "long" else b"" if mode == "ok" else b"ok")
        self.send_response(answered)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve https")
    args = parser.parse_args()
    STATE["secrets"], STATE["mode"] = args.secret, args.mode
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
