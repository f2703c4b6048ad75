"""Parse model output into questions, topics/concepts and answers, robustly.

Small models wander from the requested format: numbered lists instead of ``Q:``, markdown
bold, a preamble ("Sure! Here are..."), a repeated line, a truncated last line. These
parsers accept the common variants and raise :class:`MalformedOutput` with a short
machine-readable ``reason`` when nothing usable is left; callers count the reason and
record the raw text as a reject. Nothing here raises anything else on any input string.
"""
from __future__ import annotations

import re

from fastsynth.errors import FastsynthError

# A question needs a few words to be a question at all; 3 rejects "Why?" / "What is it?".
MIN_QUESTION_WORDS = 4
# Longer than this is a run-on (a model looping inside one line), not a question.
MAX_QUESTION_WORDS = 80

_WH = ("what", "why", "how", "which", "who", "whom", "whose", "when", "where", "is", "are",
       "does", "do", "did", "can", "could", "should", "would", "will", "explain", "describe",
       "compare", "list", "name", "give", "in what", "to what")
_PREFIX = re.compile(
    r"^\s*(?:[-*\u2022>]+\s*)?(?:\*\*)?\s*"
    r"(?:(?:q(?:uestion)?\s*\d*\s*(?:\((?:original|new)\))?\s*[:.)\-]|\d+\s*[.):\-]|\(\d+\))\s*)?"
    r"(?:\*\*)?\s*",
    re.IGNORECASE,
)
_ASKER = re.compile(r"^(?:a\s+)?student\s+(?:could|might|would|may)?\s*(?:ask|asked)\s*[:,]?\s*", re.IGNORECASE)
# Wording of our own prompts: a "question" containing it is the prompt echoed back.
_ECHO = re.compile(r"text above|texts above|student (?:could|might|would)? ?ask|questions could|"
                   r"write \d+ questions|using these terms", re.IGNORECASE)
_TAG = re.compile(r"\s*[\[(](?:original|new|newly created)[\])]\s*", re.IGNORECASE)
_NONE_REPLY = re.compile(r"^\W*(none|unsuitable|not suitable|n/?a)\b", re.IGNORECASE)
_PREAMBLE = re.compile(r"^(sure|here (are|is)|certainly|okay|ok)\b", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(i(?:'m| am) sorry|i cannot|i can't|i can not|as an ai|i'm unable|i am unable|"
    r"cannot (?:answer|help)|unable to (?:answer|provide))\b",
    re.IGNORECASE,
)


class MalformedOutput(FastsynthError):
    """Model output without the expected structure; ``reason`` is a short slug."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def is_none_reply(text: str) -> bool:
    """True when the model declared the document unsuitable (a reply starting with NONE)."""
    return bool(_NONE_REPLY.match(text.strip().strip('"*')))


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def clean_question(line: str) -> str | None:
    """One line -> a question, or ``None`` when it is not one."""
    s = line
    for _ in range(3):  # "2) Q2 (original): ..." carries two prefixes
        t = _PREFIX.sub("", _TAG.sub(" ", s), count=1).strip()
        if t == s:
            break
        s = t
    s = _ASKER.sub("", s.strip().strip('"\u201c\u201d*').strip()).strip().strip('"\u201c\u201d*').strip()
    if not s or _PREAMBLE.match(s) or is_refusal(s) or _ECHO.search(s):
        return None
    if "?" in s:  # keep through the first question mark: drop trailing chatter
        s = s[: s.index("?") + 1]
    elif s.lower().startswith(_WH):
        s = s.rstrip(" .:;,") + "?"
    else:
        return None
    s = re.sub(r"\s+", " ", s)
    n_words = len(s.split())
    if not MIN_QUESTION_WORDS <= n_words <= MAX_QUESTION_WORDS:
        return None
    return s


def parse_questions(text: str, limit: int = 5, truncated: bool = False) -> list[str]:
    """Distinct questions from a list-style reply, in order, at most ``limit``.

    Lines starting ``Q:``/``Question 2:``/``1.``/``-`` or ending with ``?`` count; tags
    like ``(original)`` and "A student might ask:" are dropped; lines echoing the prompt's
    wording are not questions. With ``truncated`` (the reply hit ``max_tokens``) an
    unfinished last line is dropped. Raises ``MalformedOutput("no_questions")`` if none.
    """
    if not text or not text.strip():
        raise MalformedOutput("empty_output")
    if truncated:
        lines = text.rstrip().split("\n")
        if not lines[-1].rstrip().endswith("?"):
            text = "\n".join(lines[:-1])
    out: list[str] = []
    seen: set[str] = set()
    # Some replies put several "Q:" items on one line.
    for line in re.split(r"\n|(?=\bQ\d*\s*:)", text):
        q = clean_question(line)
        if q is None:
            continue
        key = q.lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(q)
        if len(out) >= limit:
            break
    if not out:
        raise MalformedOutput("no_questions", text[:80])
    return out


_TOPIC = re.compile(r"^\W*(?:\d+\s*[.)]\s*)?topic\s*\d*\s*[:\-]\s*(.+)$", re.IGNORECASE)
# Markdown-style topic headers small models write instead: "1. **Lists**:", "## Lists", "Lists:"
_HEADER = re.compile(r"^(?:\d+\s*[.)]\s*)?(?:\*\*(?P<b>[^*]{2,60})\*\*\s*:?|#{1,4}\s+(?P<h>.{2,60})|"
                     r"(?P<c>[A-Za-z][^:*]{1,58}):)\s*(?P<rest>.*)$")
_CONCEPTS = re.compile(r"^\W*(?:key\s+)?(?:concepts?|terms?)\s*[:\-]\s*(.*)$", re.IGNORECASE)
# Template placeholders a small model copies instead of filling in.
_PLACEHOLDER = re.compile(r"[<>]|^(?:topic|term|concept|a few words|name of the topic)s?$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+\s*[.)])\s+(.+)$")


def _split_concepts(s: str) -> list[str]:
    """A comma/semicolon list -> names ("a, b, and c" -> a, b, c; "naming and binding" stays whole)."""
    out = []
    for p in re.split(r"[,;]", s):
        p = re.sub(r"^\s*(?:and|or)\s+", "", p)
        p = p.replace('"', "").strip().strip(".:'*`()[]").strip()
        if p and len(p) <= 60 and len(p.split()) <= 6 and not _PLACEHOLDER.search(p):
            out.append(p)
    return out


def parse_topics(text: str, max_topics: int = 5, max_concepts: int = 20) -> list[tuple[str, list[str]]]:
    """Topics and their concepts -> ``[(topic, [concept, ...]), ...]``.

    Accepted shapes: ``Topic: X`` / ``Concepts: a, b`` (or ``Terms:``) blocks; markdown
    headers (``1. **X**:``, ``## X``, ``X:``) followed by bullets or an inline list; and the
    shape small models write unprompted — a list under a header mentioning *topics*
    ("The main topics are:") and a list under a header mentioning *terms* or *concepts*.
    In that last shape the reply does not say which term belongs to which topic, so every
    term is given to every listed topic; with terms but no topics (or topics but no terms)
    the topic name is ``""`` and the caller names it (see ``level2.collect_concepts``).
    Placeholders copied from a template (``<term>``, "a few words") are dropped. At most
    ``max_topics`` topics and ``max_concepts`` concepts per topic are kept (SynthLLM asks
    for 1-5 x 5-20). Raises ``MalformedOutput("no_topics")`` when no concept remains.
    """
    if not text or not text.strip():
        raise MalformedOutput("empty_output")
    blocks: list[tuple[str, list[str]]] = []
    topic_items: list[str] = []
    term_items: list[str] = []
    mode = None  # "block" | "topics" | "terms"
    for raw in text.splitlines():
        line = raw.replace("**", "").strip()
        if not line:
            continue
        m = _TOPIC.match(line)
        if m:
            name = m.group(1).strip().strip(".:\"'`").strip()
            inline = re.split(r"\b(?:concepts?|terms?)\s*[:\-]", name, maxsplit=1, flags=re.IGNORECASE)
            blocks.append((inline[0].strip(" ,;-"), _split_concepts(inline[1]) if len(inline) == 2 else []))
            mode = "block"
            continue
        m = _CONCEPTS.match(line)
        if m:
            items = _split_concepts(m.group(1))
            if mode == "block" and blocks:
                blocks[-1][1].extend(items)
            else:
                term_items.extend(items)
                mode = "terms"
            continue
        bullet = _BULLET.match(line)
        if line.endswith(":") and not bullet and not raw[:1].isspace():
            low = line.lower()
            if "term" in low or "concept" in low:
                mode = "terms"
                continue
            if "topic" in low:
                mode = "topics"
                continue
        h = None if raw[:1].isspace() else _HEADER.match(raw.strip())
        if h and (h.group("b") or h.group("h") or (not bullet and mode not in ("topics", "terms"))):
            name = (h.group("b") or h.group("h") or h.group("c")).strip().strip(".:\"'`").strip()
            blocks.append((name, _split_concepts(h.group("rest")) if h.group("rest") else []))
            mode = "block"
            continue
        if not bullet:
            continue
        item = bullet.group(1)
        if mode == "topics":
            topic_items.extend(_split_concepts(item)[:1])
        elif mode == "terms":
            term_items.extend(_split_concepts(item))
        elif mode == "block" and blocks:
            blocks[-1][1].extend(_split_concepts(item))
    if any(cs for _, cs in blocks):
        pairs = [(n, cs + term_items) for n, cs in blocks]
    elif topic_items and term_items:
        pairs = [(t, term_items) for t in topic_items]
    else:
        # several bare headers (a list of topic names): use the names as concepts
        pairs = [("", term_items or topic_items or ([n for n, _ in blocks] if len(blocks) > 1 else []))]
    result = []
    for name, concepts in pairs:
        if _PLACEHOLDER.search(name):
            continue
        uniq = list(dict.fromkeys(c for c in concepts if c.lower() != name.lower()))
        if uniq:
            result.append((name, uniq[:max_concepts]))
        if len(result) >= max_topics:
            break
    if not result:
        raise MalformedOutput("no_topics", text[:80])
    return result


_ANSWER_PREFIX = re.compile(r"^\s*(?:\*\*)?\s*(?:a|answer)\s*[:.)\-]\s*(?:\*\*)?\s*", re.IGNORECASE)


def parse_answer(text: str, max_words: int = 200) -> str:
    """The answer text: prefix ``A:``/``Answer:`` removed, whitespace collapsed.

    Raises ``MalformedOutput`` with ``empty_answer``, ``refusal`` or ``too_long``.
    """
    s = _ANSWER_PREFIX.sub("", (text or "").strip(), count=1)
    s = re.sub(r"\s+", " ", s).strip()
    if not s or not re.search(r"\w", s):
        raise MalformedOutput("empty_answer")
    if is_refusal(s[:200]):
        raise MalformedOutput("refusal", s[:80])
    if len(s.split()) > max_words:
        raise MalformedOutput("too_long")
    return s
