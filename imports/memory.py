"""Durable memory from conversations: local, deterministic fact extraction, and the MEMORY
section it renders to. Only what the person said about themselves counts (user messages on the
branch they saw)."""
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

from imports.export_reader import Conversation

CATEGORIES = {
    "identity": "Who they are",
    "work": "Work",
    "place": "Places",
    "project": "Projects",
    "skill": "Skills and tools",
    "preference": "Preferences",
    "topic": "Recurring topics",
    "instructions": "Custom instructions",
}
ROLE_WORDS = ("developer", "engineer", "scientist", "manager", "student", "teacher", "consultant",
              "designer", "architect", "researcher", "founder", "analyst", "writer", "doctor",
              "nurse", "lawyer", "freelancer", "entrepreneur", "owner", "programmer", "coach",
              "product owner", "data", "professor", "marketer", "recruiter", "accountant")
SKILLS = ("python", "django", "flask", "fastapi", "docker", "kubernetes", "postgresql", "postgres",
          "mysql", "sqlite", "redis", "javascript", "typescript", "react", "vue", "angular",
          "node", "java", "kotlin", "swift", "rust", "golang", "c#", "c++", "php", "ruby",
          "rails", "aws", "azure", "gcp", "terraform", "ansible", "linux", "git", "github",
          "gitlab", "jenkins", "pandas", "numpy", "pytorch", "tensorflow", "excel", "power bi",
          "tableau", "figma", "latex", "bash", "powershell", "sql", "graphql", "spark", "kafka",
          "openai", "chatgpt", "langchain", "jira", "confluence", "sharepoint", "selenium")
STOPWORDS = set("""about after again also another because before being between could does doing
during each from further have having here into itself just more most other over same should
some such than that their them then there these they this those through under until very what
when where which while with would your help need using make create want question issue error
problem write code request how new chat""".split())
WEAK_STARTS = {"is", "as", "to", "it", "this", "that", "the", "following", "something", "you"}

END = r"(?=[.,;:!?\n]|\band\b|\bbut\b|$)"
COMPANY = r"([A-Z][\w&.-]*(?: [A-Z][\w&.-]*){0,3})"
PLACE = r"([A-Z][\w-]+(?:,? [A-Z][\w-]+){0,2})"
# Each rule: the phrase that starts a statement about the person, what it says, and the pattern
# (matched from that phrase) that takes the value.
RULES = [
    ("my name is", "identity", r"my name is ([A-Z][\w'-]+(?: [A-Z][\w'-]+)?)"),
    ("I am", "identity", r"I(?:'m| am) (an? [\w -]{3,50}?)" + END),
    ("I am", "place", r"I(?:'m| am) (?:from|based in) " + PLACE),
    ("I am", "project", r"I(?:'m| am) (?:working on|building|developing|creating) (.{3,80}?)" + END),
    ("I work", "work", r"I work (?:at|for) " + COMPANY),
    ("I work", "work", r"I work as (an? [\w -]{3,50}?)" + END),
    ("my company", "work", r"my (?:company|employer|team) (?:is )?" + COMPANY),
    ("I live", "place", r"I live in " + PLACE),
    ("I want to", "project", r"I want to (?:develop|build|create|make|set up) (.{3,80}?)" + END),
    ("my project", "project", r"my (?:project|app|application|website|startup) (?:is |called )?"
                              r"(.{3,80}?)" + END),
    ("I like", "preference", r"I (?:prefer|like|love|enjoy) (.{3,80}?)" + END),
    ("I do not", "preference", r"I (?:don't|do not) (?:like|want) (.{3,80}?)" + END),
]
# Statements about the person start with "I …" or "my …". Two patterns that each begin with a
# literal scan several times faster than one alternation (the regex engine skips to the literal).
TRIGGERS = [
    re.compile(r"I(?:'m| am| work| live| want to| prefer| like| love| enjoy| don't| do not)\b"),
    re.compile(r"my (?:name is|company|employer|team|project|app|application|website|startup)\b"),
]
SAME_AS = {"I'm": "I am", "I prefer": "I like", "I love": "I like", "I enjoy": "I like",
           "I don't": "I do not", "my employer": "my company", "my team": "my company",
           "my app": "my project", "my application": "my project", "my website": "my project",
           "my startup": "my project"}


def statements(text: str):
    """(phrase, window) for each place where the person may say something about themselves."""
    for trigger in TRIGGERS:
        for match in trigger.finditer(text):
            start = match.start()
            if start and text[start - 1].isalnum():
                continue  # inside a word ("HI am"), not a statement
            yield match.group(0), text[start:start + 160]
RULES_AFTER: dict[str, list] = {}
for _trigger, _category, _pattern in RULES:
    RULES_AFTER.setdefault(_trigger, []).append((_category, re.compile(_pattern)))
SINGLE_WORD_SKILLS = {s for s in SKILLS if " " not in s}
MULTI_WORD_SKILLS = [s for s in SKILLS if " " in s]
PUNCTUATION = ".,;:!?()[]{}<>\"'`*/"
WORD = re.compile(r"[A-Za-z][A-Za-z+#-]{3,}")


@dataclass(frozen=True)
class Fact:
    category: str
    text: str
    conversation_id: str
    conversation_title: str

    @cached_property
    def fingerprint(self) -> str:
        key = f"{self.category}|{' '.join(self.text.lower().split())}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def facts_from(conversation: Conversation) -> list[Fact]:
    """The durable facts one conversation states (deduplicated within it)."""
    if conversation.do_not_remember:
        return []
    found: dict[str, Fact] = {}

    def add(category, text):
        text = " ".join(text.split()).strip(" \"'`*")
        if 3 <= len(text) <= 120 and text.split()[0].lower() not in WEAK_STARTS:
            fact = Fact(category, text, conversation.id, conversation.title)
            found.setdefault(fact.fingerprint, fact)

    for phrase, window in statements(conversation.user_text):
        for category, pattern in RULES_AFTER[SAME_AS.get(phrase, phrase)]:
            match = pattern.match(window)
            if match is None:
                continue
            value = match.group(1)
            if category == "identity" and value.lower().startswith(("a ", "an ")) and \
                    not any(word in value.lower() for word in ROLE_WORDS):
                continue  # "I am a bit confused" says nothing durable
            add(category, value)
    if conversation.custom_instructions:
        add("instructions", conversation.custom_instructions[:120])
    return list(found.values())


def tally(conversation: Conversation, stats: dict) -> None:
    """Count skills and title words across conversations (for the aggregate facts); `stats`
    is JSON, saved in the checkpoint so a resumed pass continues the counts."""
    if conversation.do_not_remember:
        return
    lowered = conversation.user_text.lower()
    # Splitting on white space and trimming the few distinct words is far cheaper than a
    # regex over the whole text.
    words = {word.strip(PUNCTUATION) for word in set(lowered.split())}
    skills = SINGLE_WORD_SKILLS & words
    skills.update(s for s in MULTI_WORD_SKILLS if s in lowered)
    for key, words in (("skills", skills),
                       ("topics", {w.lower() for w in WORD.findall(conversation.title)
                                   if w.lower() not in STOPWORDS})):
        bucket = stats.setdefault(key, {})
        for word in words:
            entry = bucket.setdefault(word, [0, conversation.id, conversation.title])
            entry[0] += 1
        if len(bucket) > 2000:  # keep the checkpoint small: drop the rarest
            for word, _ in Counter({w: e[0] for w, e in bucket.items()}).most_common()[1000:]:
                del bucket[word]


def aggregate_facts(stats: dict) -> list[Fact]:
    """Skills used in two or more conversations; title words in three or more."""
    facts = []
    for key, category, minimum, limit in (("skills", "skill", 2, 15), ("topics", "topic", 3, 10)):
        ranked = sorted((stats.get(key) or {}).items(), key=lambda kv: (-kv[1][0], kv[0]))
        for word, (count, conversation_id, title) in ranked[:limit]:
            if count >= minimum:
                facts.append(Fact(category, f"{word} ({count} conversations)", conversation_id,
                                  title))
    return facts


def render_memory(facts) -> str:
    """The MEMORY section as Markdown: one heading per category, one line per fact."""
    by_category: dict[str, list] = {}
    seen = set()
    for fact in facts:
        key = (fact.category, fact.text.lower())
        if key not in seen:
            seen.add(key)
            by_category.setdefault(fact.category, []).append(fact)
    lines = ["# MEMORY", ""]
    for category, heading in CATEGORIES.items():
        items = by_category.get(category)
        if not items:
            continue
        lines += [f"## {heading}", *(f"- {f.text} (from “{f.conversation_title}”)"
                                     for f in items[:25]), ""]
    if len(lines) == 2:
        lines.append("Nothing durable was found yet.")
    return "\n".join(lines).strip() + "\n"
