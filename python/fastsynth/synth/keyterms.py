"""Key terms of a document without a model (RAKE, Rose et al. 2010), for when the model's
concept list is too thin.

Candidate phrases are maximal runs of 1-2 content words between stop words and
punctuation; a word scores degree/frequency (degree: the summed lengths of the phrases
it occurs in), a phrase the sum of its words' scores. Identifiers such as ``__debug__``
or ``os.path`` count as words. The pipeline uses these terms only to top up a model's
concept list that has fewer than the minimum, and says so in the record's provenance.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from fastsynth.synth.concepts import normalize

_STOP = frozenset("""a about above after again against all also an and any are as at be because been before
being below between both but by can could did do does doing down during each either else even ever every few
for from further had has have having he her here hers him his how however i if in into is it its itself just
may might more most must my neither no nor not now of off on once one only or other our out over own same
shall she should so some such than that the their them then there these they this those through thus to too
under until up upon us use used uses using very via was we were what when where whether which while who whom
whose why will with within without would yet you your e.g i.e etc see following example examples
add adds added return returns returned create creates created support supports supported define defines
defined evaluate evaluates evaluated make makes made take takes taken give gives given allow allows allowed
call calls called contain contains contained provide provides provided raise raises raised refer refers
occur occurs assume assumes usually always often never directly like new""".split())
_WORD = re.compile(r"[A-Za-z_][\w.]*\w|[A-Za-z]")
MAX_WORDS = 2  # concept names are short noun phrases; RAKE's longer runs are mostly clauses


def _phrases(text: str) -> list[list[str]]:
    out = []
    for segment in re.split(r"[\n,;:!?()\[\]{}\"'`=<>|*#]+|\.\s", text):
        run: list[str] = []
        for tok in segment.split():
            w = tok.strip(".-/").lower()
            if not _WORD.fullmatch(w) or w in _STOP or len(w) < 3:
                if run:
                    out.append(run)
                run = []
            else:
                run.append(w)
        if run:
            out.append(run)
    return [p for p in out if len(p) <= MAX_WORDS]


def key_terms(text: str, k: int = 8) -> list[str]:
    """Up to ``k`` normalised key terms of ``text``, alternating the most frequent single
    content words and the best RAKE phrases (ties by first occurrence), a word first. The
    single words ("tuple", "method") are what documents share, so they are what links
    documents in the Level-3 graph; the phrases are what makes each document specific."""
    phrases = _phrases(text)
    freq: Counter[str] = Counter()
    degree: Counter[str] = Counter()
    for p in phrases:
        for w in p:
            freq[w] += 1
            degree[w] += len(p)
    score: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for i, p in enumerate(phrases):
        name = normalize(" ".join(p))
        if not name or name in first:
            continue
        first[name] = i
        score[name] = sum(degree[w] / freq[w] for w in p)
    multi = [n for n in sorted(score, key=lambda n: (-score[n], first[n])) if " " in n]
    order: dict[str, int] = {}
    for i, w in enumerate(w for p in phrases for w in p):
        order.setdefault(w, i)
    single = [normalize(w) for w in sorted(freq, key=lambda w: (-freq[w], order[w]))]
    single = [w for w in dict.fromkeys(single) if len(w) >= 4]
    out: list[str] = []
    while len(out) < k and (single or multi):
        for pool in (single, multi):
            while pool and pool[0] in out:
                pool.pop(0)
            if pool and len(out) < k:
                out.append(pool.pop(0))
    return out
