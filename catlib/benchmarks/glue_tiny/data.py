"""Eight procedural GLUE-like tasks on one small English-like grammar, the stand-in for the paper's Table 3.

One lexicon (determiners, nouns by category with plurals and hypernyms, names, verbs with 3rd-person, participle and
synonym forms, descriptive adjectives with synonyms and antonyms, sentiment words, intensifiers, negation, numbers,
question words, prepositions, times) and one clause grammar (subject, verb, object, place, time, negation; active or
passive) generate every task, so that a masked-language-model pretrained on :func:`mlm_corpus` transfers; each task
asks for a different skill over it:

=====  =======  ===============  ================================================================================
task   analogue labels           what an example is
=====  =======  ===============  ================================================================================
cola   CoLA     2 (1 = ok)       one sentence, grammatical or corrupted (agreement, word swap, missing word, ...)
sst2   SST-2    2 (1 = pos)      one review sentence with negation, intensifiers and "but" contrasts
mrpc   MRPC     2 (1 = para)     two statements: a paraphrase (synonyms, passive, moved time) or a near miss
qqp    QQP      2 (1 = dup)      two questions: the same question rephrased, or another question
stsb   STS-B    score in [0, 5]  two statements sharing a graded part of their meaning
mnli   MNLI     3 (0/1/2)        premise, hypothesis: entailment / neutral / contradiction
qnli   QNLI     2 (0 = entail)   question, sentence: 0 if the sentence holds the answer, 1 if not
rte    RTE      2 (0 = entail)   two-clause premise, hypothesis: entailment / not; a small training set
=====  =======  ===============  ================================================================================

A sentence is a string of space-separated words (punctuation are words too); an example is ``(a, b)``, ``b`` None
for single-sentence tasks. Everything is deterministic given the seed (a numpy Generator per task and seed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------------------
# lexicon
# ---------------------------------------------------------------------------------------------------------------
# nouns: (singular, plural); categories have a hypernym (singular, plural) used by entailment
ANIMALS = (
    ("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("bird", "birds"), ("rabbit", "rabbits"),
    ("fox", "foxes"), ("mouse", "mice"), ("cow", "cows"), ("lion", "lions"), ("tiger", "tigers"),
    ("wolf", "wolves"), ("duck", "ducks"), ("goat", "goats"), ("bear", "bears"), ("monkey", "monkeys"),
)  # fmt: skip
PEOPLE = (
    ("teacher", "teachers"), ("doctor", "doctors"), ("child", "children"), ("farmer", "farmers"),
    ("student", "students"), ("artist", "artists"), ("driver", "drivers"), ("singer", "singers"),
    ("nurse", "nurses"), ("lawyer", "lawyers"), ("baker", "bakers"), ("pilot", "pilots"), ("writer", "writers"),
    ("player", "players"), ("worker", "workers"), ("chef", "chefs"), ("soldier", "soldiers"),
)  # fmt: skip
OBJECTS = (
    ("ball", "balls"), ("book", "books"), ("box", "boxes"), ("car", "cars"), ("cup", "cups"), ("bag", "bags"),
    ("key", "keys"), ("chair", "chairs"), ("table", "tables"), ("letter", "letters"), ("lamp", "lamps"),
    ("phone", "phones"), ("bottle", "bottles"), ("coat", "coats"), ("hat", "hats"), ("ticket", "tickets"),
    ("painting", "paintings"), ("bicycle", "bicycles"), ("map", "maps"), ("basket", "baskets"),
)  # fmt: skip
FOODS = (
    ("apple", "apples"), ("cake", "cakes"), ("bread", "breads"), ("orange", "oranges"), ("sandwich", "sandwiches"),
    ("pie", "pies"), ("cookie", "cookies"), ("egg", "eggs"), ("pizza", "pizzas"), ("banana", "bananas"),
)  # fmt: skip
CATEGORIES: Mapping[str, tuple] = MappingProxyType(
    {
        "animal": (ANIMALS, ("animal", "animals")),
        "person": (PEOPLE, ("person", "people")),
        "object": (OBJECTS, ("thing", "things")),
        "food": (FOODS, ("food", "foods")),
    }
)
PLACES = (
    "park", "city", "garden", "kitchen", "school", "library", "market", "station", "forest", "river", "village",
    "office", "house", "museum", "beach", "field", "hospital", "church", "bridge", "harbor",
)  # fmt: skip
PREPS = ("in", "at", "near", "behind", "beside", "inside")
TIMES = (
    "every morning", "every evening", "at night", "at noon", "on monday", "on tuesday", "on friday", "on sunday",
    "in the summer", "in the winter", "after lunch", "before dinner", "every day", "at dawn",
)  # fmt: skip
NAMES = (
    "mary", "john", "anna", "peter", "lucy", "david", "emma", "paul", "sara", "tom", "alice", "james", "nina",
    "mark", "laura", "sam", "julia", "oscar", "helen", "victor", "rosa", "leo", "clara", "hugo",
)  # fmt: skip
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
# transitive verbs: (base, 3rd person singular, participle, synonym base or None)
TRANSITIVE = (
    ("see", "sees", "seen", "notice"), ("notice", "notices", "noticed", "see"),
    ("like", "likes", "liked", "enjoy"), ("enjoy", "enjoys", "enjoyed", "like"),
    ("buy", "buys", "bought", "purchase"), ("purchase", "purchases", "purchased", "buy"),
    ("find", "finds", "found", "discover"), ("discover", "discovers", "discovered", "find"),
    ("help", "helps", "helped", "assist"), ("assist", "assists", "assisted", "help"),
    ("make", "makes", "made", "create"), ("create", "creates", "created", "make"),
    ("chase", "chases", "chased", "pursue"), ("pursue", "pursues", "pursued", "chase"),
    ("watch", "watches", "watched", "observe"), ("observe", "observes", "observed", "watch"),
    ("take", "takes", "taken", "grab"), ("grab", "grabs", "grabbed", "take"),
    ("carry", "carries", "carried", None), ("sell", "sells", "sold", None), ("hold", "holds", "held", None),
    ("bring", "brings", "brought", None), ("push", "pushes", "pushed", None), ("follow", "follows", "followed", None),
    ("visit", "visits", "visited", None), ("paint", "paints", "painted", None), ("clean", "cleans", "cleaned", None),
    ("open", "opens", "opened", None), ("build", "builds", "built", None), ("eat", "eats", "eaten", None),
    ("want", "wants", "wanted", None), ("meet", "meets", "met", None), ("hide", "hides", "hidden", None),
    ("catch", "catches", "caught", None), ("throw", "throws", "thrown", None), ("lose", "loses", "lost", None),
)  # fmt: skip
INTRANSITIVE = (
    ("sleep", "sleeps"), ("run", "runs"), ("walk", "walks"), ("sing", "sings"), ("dance", "dances"),
    ("swim", "swims"), ("laugh", "laughs"), ("wait", "waits"), ("rest", "rests"), ("work", "works"),
    ("play", "plays"), ("smile", "smiles"), ("jump", "jumps"), ("cry", "cries"), ("arrive", "arrives"),
)  # fmt: skip
# descriptive adjectives: (word, synonym or None, antonym or None)
ADJECTIVES = (
    ("big", "large", "small"), ("large", "big", "small"), ("small", "little", "big"), ("little", "small", "big"),
    ("quick", "fast", "slow"), ("fast", "quick", "slow"), ("slow", None, "fast"), ("happy", "glad", "sad"),
    ("glad", "happy", "sad"), ("sad", "unhappy", "happy"), ("unhappy", "sad", "happy"),
    ("clever", "smart", "stupid"), ("smart", "clever", "stupid"), ("stupid", None, "clever"),
    ("old", None, "young"), ("young", None, "old"), ("quiet", "silent", "loud"), ("silent", "quiet", "loud"),
    ("loud", "noisy", "quiet"), ("noisy", "loud", "quiet"), ("clean", None, "dirty"), ("dirty", None, "clean"),
    ("warm", None, "cold"), ("cold", None, "warm"), ("heavy", None, "light"), ("light", None, "heavy"),
    ("red", None, None), ("blue", None, None), ("green", None, None), ("brown", None, None), ("white", None, None),
    ("tall", None, "short"), ("short", None, "tall"), ("dark", None, "bright"), ("bright", None, "dark"),
)  # fmt: skip
REVIEW_NOUNS = (
    "film", "movie", "story", "plot", "acting", "music", "show", "novel", "meal", "song", "performance", "ending",
    "script", "dialogue", "soundtrack", "cast", "album", "play", "restaurant", "game",
)  # fmt: skip
POSITIVE = (
    "good", "great", "wonderful", "excellent", "brilliant", "enjoyable", "delightful", "charming", "beautiful",
    "moving", "funny", "superb", "fresh", "gripping", "lovely", "solid",
)  # fmt: skip
NEGATIVE = (
    "bad", "awful", "terrible", "boring", "dull", "weak", "poor", "horrible", "tedious", "messy", "predictable",
    "painful", "bland", "clumsy", "lifeless", "forgettable",
)  # fmt: skip
INTENSIFIERS = ("very", "really", "extremely", "quite", "truly", "so", "rather", "incredibly", "slightly", "somewhat")
POS_VERBS = (("love", "loved"), ("like", "liked"), ("enjoy", "enjoyed"), ("admire", "admired"))
NEG_VERBS = (("hate", "hated"), ("dislike", "disliked"), ("regret", "regretted"), ("despise", "despised"))
FUNCTION_WORDS = (
    "the a an this that these those some many every one no nobody someone something and but although while after "
    "because is are was were do does did not never hardly by who whom what where when which how person thing place "
    "time number of i we it everyone critics also , . ?"
).split()

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3 as RoBERTa's; "<mask>" is the last id
BOS, PAD, EOS, UNK = 0, 1, 2, 3


def _build_vocab() -> Tuple[str, ...]:
    words: List[str] = []
    for group in CATEGORIES.values():
        words += [w for pair in group[0] for w in pair] + list(group[1])
    words += list(PLACES) + list(PREPS) + [w for t in TIMES for w in t.split()] + list(NAMES) + list(NUMBERS)
    words += [w for v in TRANSITIVE for w in v[:3]] + [w for v in INTRANSITIVE for w in v]
    words += [w for a in ADJECTIVES for w in a if w] + list(REVIEW_NOUNS) + list(POSITIVE) + list(NEGATIVE)
    words += list(INTENSIFIERS) + [w for v in POS_VERBS + NEG_VERBS for w in v] + FUNCTION_WORDS
    seen = dict.fromkeys(w for w in words if w not in SPECIALS)  # ordered, de-duplicated
    return SPECIALS + tuple(seen) + ("<mask>",)


VOCAB: Tuple[str, ...] = _build_vocab()
WORD_ID: Mapping[str, int] = MappingProxyType({w: i for i, w in enumerate(VOCAB)})
MASK = len(VOCAB) - 1
VOCAB_SIZE = len(VOCAB)


# ---------------------------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------------------------
def tokenize(sentence: str) -> List[int]:
    """Word ids of a sentence (split on white space; a word outside the vocabulary is ``<unk>`` = 3)."""
    return [WORD_ID.get(w, UNK) for w in sentence.split()]


def encode(pairs: Sequence[Tuple[str, Optional[str]]], max_len: int = 64) -> Dict[str, torch.Tensor]:
    """RoBERTa's input convention: ``<s> A </s>`` for a sentence, ``<s> A </s></s> B </s>`` for a pair.

    Returns ``input_ids`` and ``attention_mask``, both (B, T) int64, T the longest encoded example (≤ ``max_len``),
    padded on the right with ``<pad>`` (= 1) and attention 0 there. Truncation (``max_len`` counts the special
    tokens): while too long, drop the last word of the longer segment (A on ties), HF's "longest_first"."""
    if max_len < 6:
        raise ValueError(f"max_len must be at least 6 (the special tokens and a word per segment), got {max_len}")
    if len(pairs) == 0:
        raise ValueError("encode: no examples to encode")
    rows = []
    for ex in pairs:
        a, b = ex if isinstance(ex, (tuple, list)) else (ex, None)
        ta, tb = tokenize(a), (tokenize(b) if b is not None else None)
        budget = max_len - (2 if tb is None else 4)
        while len(ta) + (len(tb) if tb is not None else 0) > budget:
            if tb is not None and len(tb) > len(ta):
                tb.pop()
            else:
                ta.pop()
        rows.append([BOS] + ta + [EOS] + ([] if tb is None else [EOS] + tb + [EOS]))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


# ---------------------------------------------------------------------------------------------------------------
# the clause grammar: entities and propositions are plain dicts, rendered to words
# ---------------------------------------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _entity(rng, cats=("animal", "person"), p_name=0.25, p_adj=0.35, p_plural=0.3, p_number=0.3) -> dict:
    """A noun phrase: a name, or determiner + optional adjective + noun (singular or plural)."""
    if "person" in cats and rng.random() < p_name:
        return {"name": _pick(rng, NAMES), "plural": False, "cat": "person"}
    cat = _pick(rng, cats)
    plural = bool(rng.random() < p_plural)
    det = _pick(rng, NUMBERS) if rng.random() < p_number else _pick(rng, ("the", "some", "these", "those"))
    det = det if plural else _pick(rng, ("the", "the", "a", "this", "that"))
    adj = _pick(rng, ADJECTIVES)[0] if rng.random() < p_adj else None
    return {"name": None, "noun": _pick(rng, CATEGORIES[cat][0]), "cat": cat, "plural": plural, "det": det, "adj": adj}


def _np(e: dict, syn: bool = False, hyper: bool = False, det_error: bool = False) -> List[str]:
    """Words of an entity; ``syn``: adjective synonym; ``hyper``: the category word; ``det_error``: wrong number."""
    if e["name"] is not None:
        return ["someone"] if hyper else [e["name"]]
    plural = e["plural"]
    noun = CATEGORIES[e["cat"]][1] if hyper else e["noun"]
    adj = e["adj"]
    if adj is not None and syn:
        adj = next(a[1] or a[0] for a in ADJECTIVES if a[0] == adj)
    words = ([adj] if adj else []) + [noun[1] if plural or det_error else noun[0]]
    det = e["det"]
    if det_error:  # a singular determiner with a plural noun: "a dogs", "this dogs"
        det = "a" if det in ("the", "a") else det
    elif det == "a":
        det = _article(words[0])
    return [det] + words


def _prop(rng, transitive: Optional[bool] = None, p_neg=0.2, p_loc=0.5, p_time=0.4, **entity_kw) -> dict:
    """A proposition: subject, verb, object (None for an intransitive verb), negation, place, time; ``entity_kw``
    go to both entities (:func:`_entity`)."""
    transitive = bool(rng.random() < 0.75) if transitive is None else transitive
    obj = _entity(rng, ("animal", "person", "object", "food"), **entity_kw) if transitive else None
    subj = _entity(rng, ("animal", "person"), **entity_kw)
    return {
        "subj": subj,
        "verb": _pick(rng, TRANSITIVE if transitive else INTRANSITIVE),
        "obj": obj,
        "neg": bool(rng.random() < p_neg),
        "loc": (_pick(rng, PREPS), _pick(rng, PLACES)) if rng.random() < p_loc else None,
        "time": _pick(rng, TIMES) if rng.random() < p_time else None,
    }


def _verb_entry(base: str) -> tuple:
    return next(v for v in TRANSITIVE if v[0] == base)


def _clause(p: dict, passive=False, syn=False, time_front=False, hyper=(), agree=True, det_error=None) -> List[str]:
    """Words of a proposition (no final period). ``passive`` needs an object; ``syn``: synonyms of verb and
    adjectives; ``hyper``: the roles ("subj"/"obj") said with their category word; ``agree=False``: the verb in the
    wrong number; ``det_error``: the role whose determiner disagrees with its noun."""
    verb = p["verb"]
    if syn and p["obj"] is not None and verb[3]:
        verb = _verb_entry(verb[3])
    subj = _np(p["subj"], syn, "subj" in hyper, det_error == "subj")
    tail = ([p["loc"][0], "the", p["loc"][1]] if p["loc"] else []) + (p["time"].split() if p["time"] else [])
    if passive and p["obj"] is not None:
        obj = _np(p["obj"], syn, "obj" in hyper, det_error == "obj")
        plural = p["obj"]["plural"] != (not agree)
        words = obj + ["are" if plural else "is"] + (["not"] if p["neg"] else []) + [verb[2], "by"] + subj
    else:
        plural = p["subj"]["plural"] != (not agree)
        if p["neg"]:
            vp = ["do" if plural else "does", "not", verb[0]]
        else:
            vp = [verb[0] if plural else verb[1]]
        obj = _np(p["obj"], syn, "obj" in hyper, det_error == "obj") if p["obj"] is not None else []
        words = subj + vp + obj
    if time_front and p["time"]:
        return p["time"].split() + [","] + words + tail[: len(tail) - len(p["time"].split())]
    return words + tail


def _say(p: dict, **kw) -> str:
    return " ".join(_clause(p, **kw) + ["."])


def _style(rng, p: dict) -> dict:
    """A random surface form of a proposition: passive, synonyms, time in front."""
    return {
        "passive": bool(p["obj"] is not None and rng.random() < 0.3),
        "syn": bool(rng.random() < 0.5),
        "time_front": bool(rng.random() < 0.3),
    }


def _other(rng, seq: Sequence, current):
    while True:
        x = _pick(rng, seq)
        if x != current:
            return x


def _change(rng, p: dict, slot: str) -> dict:
    """A copy of ``p`` with one slot given another value (a near miss)."""
    q = {**p, "subj": dict(p["subj"]), "obj": dict(p["obj"]) if p["obj"] else None}
    if slot in ("subj", "obj"):
        e = q[slot]
        if e["name"] is not None:
            e["name"] = _other(rng, NAMES, e["name"])
        else:
            e["noun"] = _other(rng, CATEGORIES[e["cat"]][0], e["noun"])
    elif slot == "number":
        e = q["subj"] if q["subj"]["name"] is None else q["obj"]
        if e is None or e["name"] is not None:
            return _change(rng, p, "subj")
        if e["det"] in NUMBERS:
            e["det"] = _other(rng, NUMBERS, e["det"])
        else:
            e["plural"], e["det"] = True, _pick(rng, NUMBERS)
    elif slot == "verb":
        table = TRANSITIVE if p["obj"] is not None else INTRANSITIVE
        syn = p["verb"][3] if p["obj"] is not None else None
        q["verb"] = next(v for v in iter(lambda: _pick(rng, table), None) if v[0] not in (p["verb"][0], syn))
    elif slot == "neg":
        q["neg"] = not p["neg"]
    elif slot == "loc":
        q["loc"] = (_pick(rng, PREPS), _other(rng, PLACES, p["loc"][1] if p["loc"] else None))
    elif slot == "time":
        q["time"] = _other(rng, TIMES, p["time"])
    else:
        raise ValueError(f"unknown slot {slot!r}")
    return q


# ---------------------------------------------------------------------------------------------------------------
# the tasks: each generator maps (rng, label) to an example (a, b or None); stsb's label is drawn by its generator
# ---------------------------------------------------------------------------------------------------------------
def gen_cola(rng, label: int) -> Tuple[str, None]:
    """Acceptability: a clause, or the same clause broken (agreement, determiner number, swap, drop, repeat)."""
    p = _prop(rng)
    style = _style(rng, p)
    if label == 1:
        return _say(p, **style), None
    kind = _pick(rng, ("agree", "agree", "det", "swap", "drop", "repeat"))
    if kind == "agree":
        return _say(p, agree=False, **style), None
    if kind == "det":
        role = "subj" if p["subj"]["name"] is None or p["obj"] is None else "obj"
        if p[role]["name"] is not None or p[role]["plural"]:
            return _say(p, agree=False, **style), None
        return _say(p, det_error=role, **style), None
    words = _clause(p, **style)
    if kind == "swap":
        i = int(rng.integers(len(words) - 1))
        while words[i] == words[i + 1]:
            i = int(rng.integers(len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == "drop":
        droppable = [i for i, w in enumerate(words) if w in ("the", "a", "an", "is", "are", "by", "does", "do")]
        droppable += [i for i, w in enumerate(words) if any(w in v[:3] for v in TRANSITIVE)]
        i = _pick(rng, droppable) if droppable else int(rng.integers(len(words)))
        words = words[:i] + words[i + 1 :]
    else:
        i = int(rng.integers(len(words)))
        words = words[: i + 1] + words[i:]
    return " ".join(words + ["."]), None


def _opinion(rng, label: int) -> List[str]:
    """A review clause whose polarity is ``label`` (1 positive): negation flips the adjective's or verb's sign."""
    neg = bool(rng.random() < 0.4)
    polar = label if not neg else 1 - label
    if rng.random() < 0.7:
        noun = _pick(rng, REVIEW_NOUNS)
        det = _pick(rng, ("the", "this", "that", "the"))
        be = _pick(rng, ("is", "was"))
        negw = [_pick(rng, ("not", "not", "never", "hardly"))] if neg else []
        inten = [_pick(rng, INTENSIFIERS)] if rng.random() < 0.5 else []
        adj = _pick(rng, POSITIVE if polar else NEGATIVE)
        return [det, noun, be] + negw + inten + [adj]
    verb = _pick(rng, POS_VERBS if polar else NEG_VERBS)
    who = _pick(rng, ("i", "we", "everyone", "the critics"))
    noun = ["the", _pick(rng, REVIEW_NOUNS)]
    if neg:
        return who.split() + ["did", "not", verb[0]] + noun
    return who.split() + ([_pick(rng, ("really", "truly"))] if rng.random() < 0.3 else []) + [verb[1]] + noun


def gen_sst2(rng, label: int) -> Tuple[str, None]:
    """Sentiment: one opinion, two agreeing ones, or a contrast ("..., but ...") decided by its second half."""
    r = rng.random()
    if r < 0.45:
        words = _opinion(rng, label)
    elif r < 0.7:
        words = _opinion(rng, label) + ["and"] + _opinion(rng, label)
    elif r < 0.88:
        words = _opinion(rng, 1 - label) + [",", "but"] + _opinion(rng, label)
    else:
        words = ["although"] + _opinion(rng, 1 - label) + [","] + _opinion(rng, label)
    return " ".join(words + ["."]), None


def _two_styles(rng, p: dict) -> Tuple[dict, dict]:
    """Two surface forms of ``p`` that differ in at least one respect."""
    while True:
        s, t = _style(rng, p), _style(rng, p)
        if s != t and not (p["time"] is None and s["passive"] == t["passive"] and s["syn"] == t["syn"]):
            return s, t


def gen_mrpc(rng, label: int) -> Tuple[str, str]:
    """Paraphrase: the same proposition in two surface forms (1), or a near miss: one slot changed (0)."""
    p = _prop(rng, transitive=True, p_adj=0.4) if rng.random() < 0.85 else _prop(rng, transitive=False)
    s, t = _two_styles(rng, p)
    if label == 1:
        return _say(p, **s), _say(p, **t)
    slots = ["subj", "verb", "neg", "number", "loc"] + (["obj"] if p["obj"] else []) + (["time"] if p["time"] else [])
    q = _change(rng, p, _pick(rng, slots))
    return _say(p, **s), _say(q, **(t if rng.random() < 0.5 else s))


def _question(rng, p: dict, slot: str) -> str:
    """A question asking for ``slot`` ("subj", "obj", "loc", "time", "count") of ``p``, in one of its phrasings."""
    syn = bool(rng.random() < 0.5)
    verb = _verb_entry(p["verb"][3]) if syn and p["verb"][3] else p["verb"]
    subj, obj = _np(p["subj"], syn), (_np(p["obj"], syn) if p["obj"] else [])
    aux = "do" if p["subj"]["plural"] else "does"
    loc = [p["loc"][0], "the", p["loc"][1]] if p["loc"] and slot != "loc" else []
    tm = p["time"].split() if p["time"] and slot != "time" else []
    if slot == "subj":
        opts = [["who", verb[1]] + obj, ["which", "person", verb[1]] + obj]
        if obj:
            opts.append(["by", "whom", "is" if not p["obj"]["plural"] else "are"] + obj + [verb[2]])
        words = _pick(rng, opts) + loc + tm
    elif slot == "obj":
        opts = [["what", aux] + subj + [verb[0]], ["which", "thing", aux] + subj + [verb[0]]]
        opts.append(["what", "is", verb[2], "by"] + subj)
        words = _pick(rng, opts) + loc + tm
    elif slot == "count":
        noun = p["obj"]["noun"][1] if p["obj"]["name"] is None else "people"
        head = _pick(rng, (["how", "many"], ["what", "number", "of"]))
        words = head + [noun, aux] + subj + [verb[0]] + loc + tm
    else:
        head = _pick(rng, (["where"], ["in", "which", "place"])) if slot == "loc" else None
        head = head or _pick(rng, (["when"], ["at", "what", "time"]))
        words = head + [aux] + subj + [verb[0]] + obj + loc + tm
    return " ".join(words + ["?"])


def gen_qqp(rng, label: int) -> Tuple[str, str]:
    """Duplicate questions: the same question in two phrasings (1), or another slot or a changed entity (0)."""
    p = _prop(rng, transitive=True, p_neg=0.0)
    slot = _pick(rng, ("subj", "obj", "loc", "time", "count"))
    a = _question(rng, p, slot)
    if label == 1:
        for _ in range(20):
            b = _question(rng, p, slot)
            if b != a:
                return a, b
        return a, b
    if rng.random() < 0.5:
        return a, _question(rng, p, _other(rng, ("subj", "obj", "loc", "time", "count"), slot))
    keep = {"subj": "obj", "obj": "subj"}.get(slot, _pick(rng, ("subj", "obj")))
    return a, _question(rng, _change(rng, p, _pick(rng, ("verb", keep))), slot)


STSB_SLOTS = ("subj", "verb", "obj")


def gen_stsb(rng, label=None) -> Tuple[Tuple[str, str], float]:
    """Similarity: k of three slots (subject, verb, object) changed, k uniform in 0..3; score 5·(3 − k)/3, −1.5 if
    negation flipped, plus N(0, 0.3) noise, clipped to [0, 5]. Returns the example and its score."""
    p = _prop(rng, transitive=True, p_neg=0.15)
    k = int(rng.integers(len(STSB_SLOTS) + 1))
    q = p
    for slot in rng.permutation(STSB_SLOTS)[:k]:
        q = _change(rng, q, str(slot))
    flip = bool(rng.random() < 0.2)
    if flip:
        q = _change(rng, q, "neg")
    s, t = _two_styles(rng, p)
    n = len(STSB_SLOTS)
    y = 5.0 * (n - k) / n - (1.5 if flip else 0.0) + float(rng.normal(0.0, 0.3))
    return (_say(p, **s), _say(q, **t)), float(np.clip(y, 0.0, 5.0))


def _hypothesis(rng, p: dict, label: int) -> str:
    """A hypothesis for premise ``p``: 0 entailed (generalised: fewer details, category words), 1 neutral (more
    details or another participant), 2 contradiction (negation flipped, or an adjective turned to its antonym).
    Negation reverses which of dropping and adding details is entailed."""
    q = {**p, "subj": dict(p["subj"]), "obj": dict(p["obj"]) if p["obj"] else None}
    hyper: List[str] = []
    general = (label == 0) != p["neg"]  # the direction that is entailed
    if label == 2:
        adjs = [r for r in ("subj", "obj") if q[r] and q[r].get("adj") and _antonym(q[r]["adj"])]
        if adjs and not p["neg"] and rng.random() < 0.4:  # "the big dog ..." / "the small dog ..."
            r = _pick(rng, adjs)
            q[r]["adj"] = _antonym(q[r]["adj"])
            if q[r]["det"] in ("a", "an", "some") or q[r]["det"] in NUMBERS:
                q[r]["det"] = "the"
        else:
            q["neg"] = not p["neg"]
    elif general:  # drop details: adjectives, place, time, nouns to their category
        ops = ["subj_hyper", "obj_hyper", "drop_loc", "drop_time", "drop_adj"]
        for op in rng.permutation(ops)[: 1 + int(rng.integers(2))]:
            if op == "drop_loc":
                q["loc"] = None
            elif op == "drop_time":
                q["time"] = None
            elif op == "drop_adj":
                for r in ("subj", "obj"):
                    if q[r] and q[r]["name"] is None:
                        q[r]["adj"] = None
            elif op == "subj_hyper" or (op == "obj_hyper" and q["obj"] is not None):
                hyper.append(op[:-6] if op.startswith("subj") else "obj")
    else:  # add details (entailed under negation), or another participant (neutral only)
        op = _pick(rng, ("add_loc", "add_time", "add_adj") + (("change",) if label == 1 else ()))
        if op == "add_loc" and q["loc"] is None:
            q["loc"] = (_pick(rng, PREPS), _pick(rng, PLACES))
        elif op == "add_time" and q["time"] is None:
            q["time"] = _pick(rng, TIMES)
        elif op == "add_adj" and q["subj"]["name"] is None and q["subj"].get("adj") is None:
            q["subj"]["adj"] = _pick(rng, ADJECTIVES)[0]
        elif label == 1:
            q = _change(rng, q, "obj" if q["obj"] is not None and rng.random() < 0.6 else "subj")
    style = _style(rng, q)
    return _say(q, hyper=tuple(hyper), **style)


def _antonym(adj: str) -> Optional[str]:
    return next((a[2] for a in ADJECTIVES if a[0] == adj), None)


def gen_mnli(rng, label: int) -> Tuple[str, str]:
    """Inference, 3 classes: 0 entailment, 1 neutral, 2 contradiction (see :func:`_hypothesis`)."""
    p = _prop(rng, p_adj=0.5, p_neg=0.25, p_plural=0.0)
    return _say(p, **_style(rng, p)), _hypothesis(rng, p, label)


def gen_qnli(rng, label: int) -> Tuple[str, str]:
    """Question answering as inference: 0 if the sentence states the asked slot of the questioned event, 1 if it
    leaves that slot out or tells of another event."""
    p = _prop(rng, transitive=True, p_neg=0.0, p_loc=0.8, p_time=0.8)
    slots = ["subj", "obj"] + (["loc"] if p["loc"] else []) + (["time"] if p["time"] else [])
    slot = _pick(rng, slots)
    q = _question(rng, p, slot)
    if label == 0:
        s = p
    elif rng.random() < 0.5:  # the same event without the asked slot
        s = {**p, "loc": None} if slot == "loc" else {**p, "time": None} if slot == "time" else None
        if slot == "subj":
            words = _np(p["obj"]) + ["is" if not p["obj"]["plural"] else "are", p["verb"][2]]
            tail = ([p["loc"][0], "the", p["loc"][1]] if p["loc"] else []) + (p["time"].split() if p["time"] else [])
            sent = " ".join(words + tail + ["."])
        elif slot == "obj":
            s = {**_change(rng, p, "verb"), "obj": None, "verb": _pick(rng, INTRANSITIVE)}
    else:  # another event that has a filler of the asked kind
        s = _change(rng, p, "subj" if slot != "subj" else "verb")
    if s is not None:
        sent = _say(s, **_style(rng, s))
    if rng.random() < 0.35:  # a distractor clause
        extra = _clause(_prop(rng, p_neg=0.0))
        sent = (
            " ".join(extra + ["and"] + sent.split())
            if rng.random() < 0.5
            else sent[:-2] + " and " + " ".join(extra + ["."])
        )
    return q, sent


def gen_rte(rng, label: int) -> Tuple[str, str]:
    """Two-clause premise; 0 when the hypothesis follows from one of the clauses, 1 when it is neutral,
    contradicts it, or mixes the two clauses' participants."""
    p1 = _prop(rng, p_neg=0.15, p_plural=0.0, p_adj=0.4)
    p2 = _prop(rng, p_neg=0.15, p_plural=0.0, p_adj=0.4)
    join = _pick(rng, (["and"], [",", "while"], [",", "but"], ["because"]))
    premise = " ".join(_clause(p1, **_style(rng, p1)) + join + _clause(p2, **_style(rng, p2)) + ["."])
    target = p1 if rng.random() < 0.5 else p2
    if label == 0:
        return premise, _hypothesis(rng, target, 0)
    r = rng.random()
    if r < 0.3 and p1["obj"] is not None and p2["obj"] is not None:  # the wrong participant from the other clause
        other = p2 if target is p1 else p1
        mixed = {**target, "obj": other["obj"], "neg": False, "loc": None, "time": None}
        if not target["neg"]:
            return premise, _say(mixed, **_style(rng, mixed))
    return premise, _hypothesis(rng, target, 1 if r < 0.6 else 2)


# ---------------------------------------------------------------------------------------------------------------
# the task table and splits
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One task: ``metric`` is its key in :data:`catlib.benchmarks.metrics.GLUE_METRIC` (= its name)."""

    name: str
    analogue: str
    kind: str  # "classification" or "regression"
    n_labels: int  # 1 for regression
    description: str
    generator: Callable
    label_noise: float  # classification: probability of a label drawn uniformly at random
    n_train: int = 16000

    @property
    def metric(self) -> str:
        return self.name


TASKS: Mapping[str, Task] = MappingProxyType(
    {
        t.name: t
        for t in (
            Task("cola", "CoLA", "classification", 2, "grammatical (1) or corrupted (0) sentence", gen_cola, 0.06),
            Task("sst2", "SST-2", "classification", 2, "review sentiment with negation, positive 1", gen_sst2, 0.04),
            Task("mrpc", "MRPC", "classification", 2, "statement pair: paraphrase 1, near miss 0", gen_mrpc, 0.06),
            Task("qqp", "QQP", "classification", 2, "question pair: duplicate 1, different 0", gen_qqp, 0.06),
            Task("stsb", "STS-B", "regression", 1, "statement pair similarity in [0, 5]", gen_stsb, 0.0),
            Task("mnli", "MNLI", "classification", 3, "entailment 0 / neutral 1 / contradiction 2", gen_mnli, 0.06),
            Task("qnli", "QNLI", "classification", 2, "sentence answers question 0, not 1", gen_qnli, 0.04),
            Task("rte", "RTE", "classification", 2, "two-clause premise entails 0, not 1", gen_rte, 0.06, 8000),
        )
    }
)
SPLITS = ("train", "val", "test")
N_VAL, N_TEST = 500, 1000

Example = Tuple[str, Optional[str]]


def _draw(task: Task, rng: np.random.Generator) -> Tuple[Example, float]:
    if task.kind == "regression":
        return task.generator(rng)
    label = int(rng.integers(task.n_labels))
    ex = task.generator(rng, label)
    if rng.random() < task.label_noise:
        label = int(rng.integers(task.n_labels))
    return ex, label


def task_split(
    task: str, split: str, seed: int = 0, n_train: Optional[int] = None, n_val: int = N_VAL, n_test: int = N_TEST
) -> Tuple[List[Example], list]:
    """The examples ``[(a, b or None)]`` and labels (int; float for regression) of one split.

    One stream of distinct examples per (task, seed) is cut into test, then val, then train, so the splits never
    share an example (and the test and val sets do not depend on ``n_train``; default: the task's own, 16 000 or
    RTE's 8000)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    t = TASKS[task]
    sizes = {"test": n_test, "val": n_val, "train": t.n_train if n_train is None else n_train}
    for k, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"the {k} size must be a positive integer, got {v!r}")
    need = sizes["test"] + sizes["val"] + (sizes["train"] if split == "train" else 0)
    rng = np.random.default_rng([int(seed), list(TASKS).index(task)])
    seen, examples, labels = set(), [], []
    tries = 0
    while len(examples) < need:
        tries += 1
        if tries > 20 * need + 1000:
            raise ValueError(f"{task}: could not draw {need} distinct examples; ask for fewer")
        ex, y = _draw(t, rng)
        if ex in seen:
            continue
        seen.add(ex)
        examples.append(ex)
        labels.append(y)
    start = {"test": 0, "val": sizes["test"], "train": sizes["test"] + sizes["val"]}[split]
    return examples[start : start + sizes[split]], labels[start : start + sizes[split]]


def split_hash(examples: Sequence[Example], labels: Sequence) -> str:
    """sha256 of a split's examples and labels (JSON, the manifest's record of the generated data)."""
    blob = json.dumps([[list(e) for e in examples], [float(y) for y in labels]], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def mlm_corpus(n: int, seed: int = 0) -> List[Example]:
    """``n`` sentences and pairs for masked-language-model pretraining: a mixture of plain clauses (half) and of
    every task's inputs (their labels dropped), from a stream disjoint in seed from :func:`task_split`'s."""
    if n < 1:
        raise ValueError(f"mlm_corpus: n must be positive, got {n}")
    rng = np.random.default_rng([int(seed), 1000])
    names = list(TASKS)
    out: List[Example] = []
    for _ in range(n):
        if rng.random() < 0.5:
            p = _prop(rng)
            out.append((_say(p, **_style(rng, p)), None))
        else:
            out.append(_draw(TASKS[_pick(rng, names)], rng)[0])
    return out
