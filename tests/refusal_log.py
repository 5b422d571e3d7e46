"""What the API refused in the tests, collected from the test clients' answers, so a test can
hold each answer against the endpoint's published contract."""
import json

SEEN: set[tuple[str, str, str]] = set()


def note(environ: dict, response) -> None:
    path = environ.get("PATH_INFO", "")
    if not path.startswith("/api/v1/") or not response.get("Content-Type", "").startswith(
            "application/problem+json"):
        return
    try:
        code = json.loads(response.content)["code"]
    except (ValueError, KeyError, TypeError):
        code = "<no code>"
    SEEN.add((environ.get("REQUEST_METHOD", "GET").lower(), path, code))
