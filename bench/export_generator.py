"""Realistic ChatGPT exports of any size, for tests and benchmarks.

    .venv/bin/python bench/export_generator.py out.json --mb 50 [--zip]

Conversations have a hidden system root, user/assistant turns, regenerated answers (the shown
one is not always the last child), tool and browsing messages, code, multimodal parts,
system errors, custom instructions, an occasional unknown content type, and user messages that
state durable facts. Deterministic for a given seed. Written one conversation at a time.
"""
import argparse
import json
import random
import uuid
import zipfile

FACTS = ["I work at {company}.", "I live in {city}.", "I'm building {project}.",
         "I prefer {preference}.", "I am a {role}.", "My name is {name}.",
         "I use {skill} and {skill2} every day."]
COMPANIES = ["Acme Logistics", "Northwind", "Globex", "Initech", "Umbrella Health", "Hooli"]
CITIES = ["Utrecht", "Lisbon", "Toronto", "Nairobi", "Osaka", "Denver"]
PROJECTS = ["a booking app for climbing gyms", "a Django inventory system",
            "a data pipeline for sensor readings", "a recipe recommender"]
PREFERENCES = ["short answers with examples", "Python over Java", "dark mode editors",
               "tests before refactoring"]
ROLES = ["software engineer", "data scientist", "product manager", "teacher", "designer"]
NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson"]
SKILLS = ["python", "django", "docker", "postgresql", "react", "kubernetes", "pandas", "git"]
TOPICS = ["Database indexing", "Trip planning", "Django migrations", "Resume review",
          "Docker networking", "Sourdough baking", "Kubernetes upgrade", "Budget spreadsheet"]
FILLER = ("Could you explain how this works in more detail, with an example and the trade-offs "
          "I should keep in mind when choosing between the options? ")


def _message(rng, role, content, parent, hidden=False):
    node_id = str(uuid.UUID(int=rng.getrandbits(128)))
    metadata = {"is_visually_hidden_from_conversation": True} if hidden else {}
    return node_id, {"id": node_id, "parent": parent, "children": [], "message": {
        "id": node_id, "author": {"role": role, "name": None, "metadata": {}},
        "create_time": 1680000000 + rng.random() * 1e7, "update_time": None,
        "content": content, "status": "finished_successfully", "end_turn": True, "weight": 1.0,
        "metadata": metadata, "recipient": "all"}}


def _user_text(rng, size):
    fact = rng.choice(FACTS).format(
        company=rng.choice(COMPANIES), city=rng.choice(CITIES), project=rng.choice(PROJECTS),
        preference=rng.choice(PREFERENCES), role=rng.choice(ROLES), name=rng.choice(NAMES),
        skill=rng.choice(SKILLS), skill2=rng.choice(SKILLS))
    return fact + " " + FILLER * max(1, size // len(FILLER))


def _assistant_content(rng, size):
    pick = rng.random()
    if pick < 0.15:
        return {"content_type": "code", "language": "python",
                "text": "def handler(event):\n    return {'ok': True}\n" * max(1, size // 45)}
    if pick < 0.2:
        return {"content_type": "multimodal_text", "parts": [
            {"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"},
            "Here is the picture you asked about. " * max(1, size // 40)]}
    return {"content_type": "text",
            "parts": ["Here is a detailed answer with steps and caveats. " * max(1, size // 50)]}


def conversation(rng, index, turn_bytes=600):
    mapping, root_id = {}, str(uuid.UUID(int=rng.getrandbits(128)))
    mapping[root_id] = {"id": root_id, "parent": None, "children": [], "message": None}
    system_id, system = _message(rng, "system", {"content_type": "text", "parts": [""]}, root_id,
                                 hidden=True)
    mapping[system_id] = system
    mapping[root_id]["children"].append(system_id)
    parent = system_id
    if rng.random() < 0.1:
        ctx_id, ctx = _message(rng, "user", {
            "content_type": "user_editable_context",
            "user_profile": "I am a backend developer in Utrecht.",
            "user_instructions": "Answer briefly, with code."}, parent, hidden=True)
        mapping[ctx_id] = ctx
        mapping[parent]["children"].append(ctx_id)
        parent = ctx_id
    for _ in range(rng.randint(2, 12)):
        user_id, user = _message(rng, "user", {"content_type": "text",
                                               "parts": [_user_text(rng, turn_bytes)]}, parent)
        mapping[user_id] = user
        mapping[parent]["children"].append(user_id)
        parent = user_id
        if rng.random() < 0.15:
            kind = rng.choice(["tether_browsing_display", "tether_quote", "system_error",
                               "execution_output", "future_widget"])
            tool_id, tool = _message(rng, "tool", {"content_type": kind, "result": "…",
                                                   "text": "tool output"}, parent)
            mapping[tool_id] = tool
            mapping[parent]["children"].append(tool_id)
            parent = tool_id
        answers = [_message(rng, "assistant", _assistant_content(rng, turn_bytes), parent)
                   for _ in range(2 if rng.random() < 0.1 else 1)]
        for answer_id, answer in answers:
            mapping[answer_id] = answer
            mapping[parent]["children"].append(answer_id)
        # After a regeneration the user may have gone back to the first answer.
        parent = rng.choice(answers)[0]
    return {"title": f"{rng.choice(TOPICS)} {index}", "create_time": 1680000000 + index * 60.0,
            "update_time": 1680000000 + index * 60.0 + 30, "mapping": mapping,
            "moderation_results": [], "current_node": parent, "plugin_ids": None,
            "id": str(uuid.UUID(int=rng.getrandbits(128)))}


def write_export(out, target_bytes=None, count=None, seed=7, turn_bytes=600) -> int:
    """Write a conversations.json to the binary file `out`; returns the conversation count."""
    rng = random.Random(seed)
    written, index = 1, 0
    out.write(b"[")
    while (count is None or index < count) and (target_bytes is None or written < target_bytes):
        chunk = (b", " if index else b"") + json.dumps(conversation(rng, index, turn_bytes)).encode()
        out.write(chunk)
        written += len(chunk)
        index += 1
    out.write(b"]")
    return index


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--zip", action="store_true", help="write a ZIP holding conversations.json")
    args = parser.parse_args()
    target = int(args.mb * 1024 * 1024)
    if args.zip:
        with zipfile.ZipFile(args.path, "w", zipfile.ZIP_DEFLATED) as archive, \
                archive.open("conversations.json", "w", force_zip64=True) as out:
            count = write_export(out, target)
    else:
        with open(args.path, "wb") as out:
            count = write_export(out, target)
    print(f"{args.path}: {count} conversations")


if __name__ == "__main__":
    main()
