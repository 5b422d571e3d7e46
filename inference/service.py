"""A local, OpenAI-compatible inference service with fault injection.

It answers `POST /v1/chat/completions` deterministically — an interview question for a topic,
feedback on an answer or essay, an answer to any question ("answer the question" in the system
prompt), or which of two texts separated by a line `---` is better ("compare") — and misbehaves
on request, per route and region:

    POST /_faults   {"region": "eu-west", "sequence": [500, 500, 200]}
    POST /_faults   {"route": "chat.completions", "error_rate": 0.3, "statuses": [503],
                     "retry_after": "2"}
    DELETE /_faults

A fault spec may hold: `sequence` (statuses answered in order, then normal answers),
`error_rate` + `statuses` (random errors), `for_seconds` (the spec lapses that long after it
was set: an outage that heals by itself), `retry_after` (header on errors), `latency_ms`,
`timeout` (never answer), `trickle` (send the body a byte at a time), `reset` (drop the
connection), `invalid_json`, `html`, `redirect` (a 302 to that URL). The region comes from the
`X-Region` header; the route of `/v1/chat/completions` is `chat.completions`. Used by `manage.py run` (default provider) and by the tests (a real server).
"""
import hashlib
import json
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUESTIONS = [
    "Tell me about a time you had to make a decision about {topic} with incomplete information.",
    "How would you explain the trade-offs in {topic} to a new colleague?",
    "What is the hardest problem you have solved in {topic}, and what would you do differently?",
    "Walk me through how you would design a small system for {topic} from scratch.",
    "Which mistakes do people most often make with {topic}, and how do you avoid them?",
]


def question_for(topic: str, number: int) -> str:
    seed = int(hashlib.sha256(f"{topic}|{number}".encode()).hexdigest(), 16)
    return QUESTIONS[seed % len(QUESTIONS)].format(topic=topic)


def answer_for(question: str, region: str, model: str) -> str:
    """A deterministic answer to any question, marked with the region that answered it."""
    words = question.split()
    topic = " ".join(words[:8]) + ("…" if len(words) > 8 else "")
    seed = int(hashlib.sha256(f"{question}|{model}".encode()).hexdigest(), 16)
    openings = ("In short:", "Briefly:", "The short answer:", "Put simply:")
    return (f"{openings[seed % len(openings)]} it depends on the constraints, but for "
            f"“{topic}” start from the simplest thing that works and measure. "
            f"(answered by {model} in {region or 'the default region'})")


def judgement_for(first: str, second: str) -> str:
    """Which of two texts is better, deterministically: the one with more distinct words,
    the tie broken by a hash of both. Answers "A" or "B" and a one-line reason."""
    score = [len({w.lower() for w in text.split()}) for text in (first, second)]
    if score[0] == score[1]:
        score[0] += int(hashlib.sha256(f"{first}|{second}".encode()).hexdigest(), 16) % 2
    better = "A" if score[0] >= score[1] else "B"
    return f"{better}: it uses a wider vocabulary and develops its argument further."


def feedback_for(answer: str, noun: str = "answer") -> str:
    words = answer.split()
    strengths = "a concrete example" if any(ch.isdigit() for ch in answer) else "a clear position"
    if len(words) < 25:
        advice = "Say more: describe the situation, what you did, and the result (STAR)."
    else:
        advice = "Tighten it: lead with the result, then the two decisions that mattered most."
    return (f"Your {noun} has {len(words)} words and shows {strengths}. {advice} "
            "Close by naming what you learned.")


class Faults:
    """Fault specs by route and region ("*" for any), and a position in each `sequence`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.specs: dict[str, dict] = {}
        self.calls: dict[str, int] = {}

    def set(self, spec: dict) -> None:
        with self.lock:
            key = f"{spec.pop('route', '*')}@{spec.pop('region', '*')}"
            if "for_seconds" in spec:
                spec["lapses_at"] = time.monotonic() + float(spec.pop("for_seconds"))
            self.specs[key] = spec
            self.calls[key] = 0

    def clear(self) -> None:
        with self.lock:
            self.specs.clear()
            self.calls.clear()

    def next_action(self, route: str, region: str) -> tuple[dict, int | None]:
        """The spec for this call and the status to fail with (None: answer normally)."""
        with self.lock:
            candidates = (f"{route}@{region}", f"{route}@*", f"*@{region}", "*@*")
            key = next((k for k in candidates if k in self.specs), "*@*")
            spec = self.specs.get(key, {})
            if spec.get("lapses_at", float("inf")) <= time.monotonic():
                spec = {}  # the outage is over
            n = self.calls.get(key, 0)
            self.calls[key] = n + 1
        sequence = spec.get("sequence")
        if sequence and n < len(sequence):
            return spec, (None if sequence[n] == 200 else sequence[n])
        if sequence is None and spec.get("error_rate", 0) > random.random():
            return spec, random.choice(spec.get("statuses", [503]))
        return spec, None


class Handler(BaseHTTPRequestHandler):
    server_version = "rebound-inference/1"
    # Headers and body go out in separate writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (about 40 ms a call).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # one quiet line per request is enough
        if self.server.verbose:
            super().log_message(format, *args)

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return {}

    def do_DELETE(self):
        if self.path == "/_faults":
            self.server.faults.clear()
            return self._json(200, {"faults": {}})
        self._json(404, {"error": {"message": "not found"}})

    def do_GET(self):
        if self.path == "/health":
            return self._json(200, {"ok": True})
        self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        if self.path == "/_faults":
            self.server.faults.set(self._body())
            return self._json(200, {"faults": self.server.faults.specs})
        request = self._body()  # read it whole first: the connection is kept alive
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "not found"}})
        if self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            return self._json(401, {"error": {"message": "invalid api key"}})
        spec, status = self.server.faults.next_action("chat.completions",
                                                      self.headers.get("X-Region", ""))
        if spec.get("latency_ms"):
            time.sleep(spec["latency_ms"] / 1000)
        if status is not None:
            return self._fail(spec, status)
        if self._misbehave(spec):
            return
        self._answer(request, spec)

    def _fail(self, spec, status):
        headers = {"Retry-After": str(spec["retry_after"])} if spec.get("retry_after") else {}
        self._json(status, {"error": {"message": f"injected {status}"}}, headers)

    def _misbehave(self, spec) -> bool:
        if spec.get("timeout"):
            time.sleep(float(spec.get("timeout_seconds", 60)))
            self.close_connection = True
            return True
        if spec.get("reset"):
            # SO_LINGER 0: close sends a TCP RST, as a crashed upstream would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return True
        if spec.get("redirect"):
            self.send_response(302)
            self.send_header("Location", spec["redirect"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if spec.get("invalid_json") or spec.get("html"):
            body = (b"<html><body><h1>502 Bad Gateway</h1></body></html>" if spec.get("html")
                    else b'{"choices": [{"message": ')
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if spec.get("html") else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True
        return False

    def _answer(self, request, spec):
        messages = request.get("messages") or []
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        region = self.headers.get("X-Region", "")
        if "compare" in system.lower():
            first, _, second = user.partition("\n---\n")
            text = judgement_for(first, second)
        elif "answer the question" in system.lower():
            text = answer_for(user, region, request.get("model", "rebound-local-1"))
        elif "feedback" in system.lower():
            text = feedback_for(user, "essay" if "essay" in system.lower() else "answer")
        else:
            number = sum(1 for m in messages if m.get("role") == "assistant") + 1
            text = question_for(user.strip() or "your field", number)
        payload = {"id": "chatcmpl-local", "object": "chat.completion",
                   "model": request.get("model", "rebound-local-1"),
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text}}]}
        if spec.get("trickle"):
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(float(spec.get("trickle_interval", 0.2)))
            return
        self._json(200, payload)


class InferenceServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, api_key: str, faults: Faults | None = None, verbose=False):
        super().__init__(address, Handler)
        self.api_key, self.faults, self.verbose = api_key, faults or Faults(), verbose
