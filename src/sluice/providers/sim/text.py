"""What the simulated model says, and how it splits it into streamed tokens.

`compose` turns the last user message into a deterministic markdown answer about the
prompt's topic (Japanese when the prompt is), sized in tokens; the "hostile" style mixes in
markup that a renderer must escape. `tokenize` is a regex stand-in for a BPE tokenizer:
one piece per streamed chunk, and the pieces always join back to the input. Pure: no I/O
and no shared state; every choice comes from a `random.Random` seeded per call.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator, Sequence

from sluice.providers.sim import vocabulary as vocab
from sluice.providers.sim.vocabulary import Vocabulary

STYLES = ("markdown", "hostile")

# --- tokens ---------------------------------------------------------------------------

_HIRAGANA = "\u3040-\u309f"
_KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_IDEOGRAPHS = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HANGUL = "\uac00-\ud7af"
_CJK = _HIRAGANA + _KATAKANA + _IDEOGRAPHS + _HANGUL
# Horizontal whitespace rides on the following piece, as in GPT-style BPE (" word").
_H = r"[^\S\r\n]"
# Markdown's repeated marks (```, **, ---, ##) are single tokens in real vocabularies; the
# lookahead spares every other character from trying each run in turn.
_RUNS = r"(?=[`*\-=#_~.])(?:" + "|".join(re.escape(c) + "{1,3}" for c in "`*-=#_~.") + ")"
_PIECE = "|".join(
    (
        rf"[^\W\d_{_CJK}]{{1,6}}",
        _RUNS,
        r"[^\s\w]",
        r"\d{1,3}",
        f"[{_HIRAGANA}]{{1,3}}",
        f"[{_KATAKANA}]{{1,3}}",
        f"[{_IDEOGRAPHS}{_HANGUL}]{{1,2}}",
    )
)
# No capturing groups, so findall returns whole pieces (much faster than finditer).
_TOKEN = re.compile(
    "|".join(
        (
            f"{_H}?(?:{_PIECE})",
            r"(?:\r\n|\r|\n){1,2}",
            # All but the last space of a run; the last one joins the next piece.
            rf"{_H}+(?!\S)",
            # Unreachable by construction; kept so no character can ever be skipped.
            r"[\s\S]",
        )
    )
)
_JAPANESE = re.compile(f"[{_HIRAGANA}{_KATAKANA}{_IDEOGRAPHS}]")


def tokenize(text: str) -> list[str]:
    """Split `text` into streamed pieces; ``"".join(tokenize(text)) == text``."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def is_japanese(text: str) -> bool:
    """Whether `text` has any hiragana, katakana or CJK ideograph."""
    return _JAPANESE.search(text) is not None


# --- answers --------------------------------------------------------------------------


def compose(
    prompt: str,
    *,
    seed: int | None = None,
    style: str = "markdown",
    max_tokens: int | None = None,
    length: int = 300,
) -> str:
    """The simulated answer to `prompt`, about `length` tokens long (±15% from 50 up).

    `max_tokens`, when smaller, cuts the answer to exactly that many tokens, mid-sentence,
    as a model hitting its limit would. A "hostile" answer has room for every construct from
    about 250 tokens up; below that it keeps what fits, and always ends unterminated.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    if length < 0 or (max_tokens is not None and max_tokens < 0):
        raise ValueError("length and max_tokens must not be negative")
    if length == 0:
        return ""
    # hashlib, not hash(): str hashes are salted per process.
    # surrogatepass: JSON escapes can hand us lone surrogates, which plain UTF-8 refuses.
    key = f"{style}\0{seed!r}\0{prompt}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).digest()
    writer = _Writer(random.Random(int.from_bytes(digest[:8], "big")), prompt)
    text = writer.hostile(length) if style == "hostile" else writer.markdown(length)
    if max_tokens is not None:
        pieces = tokenize(text)
        if max_tokens < len(pieces):
            text = "".join(pieces[:max_tokens])
    return text


_SLOT = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*|\S")
_JAPANESE_TOPIC = re.compile(f"[{_KATAKANA}{_IDEOGRAPHS}]{{2,}}|[A-Za-z][A-Za-z0-9.+#-]*")
_MARKUP = re.compile(r"\[([^\]]*)\]\([^)]*\)|[*`]")
_MAX_TOPICS = 6
#: A prompt that asks for a table ("Show me a table", "表で") gets one right after the
#: intro, whatever the plan would have drawn.
_TABLE_ASK = re.compile(r"\btables?\b|表", re.IGNORECASE)
#: Tokens a header, its rule and two rows take at most.
_SMALLEST_TABLE = 80
# Longer "words" are pasted data (hashes, base64), not something to talk about.
_MAX_WORD = 24
# Topics come from the start of the prompt: scanning a megabyte of pasted text for six
# topics would hold the event loop for a third of a second.
_TOPIC_SCAN = 8192


def _topics(prompt: str, japanese: bool) -> list[str]:
    """Subject phrases of the prompt, in order: runs of content words, at most three long."""
    found: list[str] = []
    if japanese:
        for match in _JAPANESE_TOPIC.finditer(prompt):
            word = match.group()
            stop = word.lower() in vocab.STOPWORDS or word in vocab.JAPANESE_STOP_TOPICS
            if 2 <= len(word) <= _MAX_WORD and not stop:
                found.append(word)
    else:
        run: list[str] = []
        for index, match in enumerate(_WORD.finditer(prompt)):
            word = match.group()
            stop = word.lower() in vocab.STOPWORDS or not 3 <= len(word) <= _MAX_WORD
            if stop or not word[0].isalpha():
                found.extend(" ".join(run[i : i + 3]) for i in range(0, len(run), 3))
                run = []
                continue
            # Keep "FastAPI", "SSE" and mid-sentence "Python"; lower a capitalised first word.
            proper = any(c.isupper() for c in word[1:]) or (word[0].isupper() and index > 0)
            run.append(word if proper else word.lower())
        found.extend(" ".join(run[i : i + 3]) for i in range(0, len(run), 3))
    unique = list(dict.fromkeys(found))
    return unique[:_MAX_TOPICS]


def subject(prompt: str) -> str | None:
    """The prompt's main subject phrase, as an answer would name it (None: none found)."""
    topics = _topics(prompt[:_TOPIC_SCAN], is_japanese(prompt))
    # "Show me a table of X": the subject is X, not the table.
    return next((t for t in topics if not _TABLE_ASK.fullmatch(t)), None)


def _identifier(topic: str) -> str:
    words = re.findall(r"[a-z0-9]+", topic.lower())[:3]
    name = "_".join(words)[:30].strip("_")
    if name and name[0].isdigit():
        name = "topic_" + name
    return name


class _Writer:
    """One answer's worth of choices; lives only for a single `compose` call."""

    def __init__(self, rng: random.Random, prompt: str) -> None:
        self.rng = rng
        japanese = is_japanese(prompt)
        self.vocab: Vocabulary = vocab.JAPANESE if japanese else vocab.ENGLISH
        topics = _topics(prompt[:_TOPIC_SCAN], japanese)
        if not topics:
            topics = [rng.choice(self.vocab.fallback_topics)]
        self.primary = topics[0]
        self.others = topics[1:]
        self.deck: list[str] = []
        self.seen = False
        idents = [i for i in map(_identifier, topics) if i]
        self.ident = idents[0] if idents else rng.choice(("item", "record", "task", "job"))
        words = {w for t in topics for w in re.findall(r"[a-z]+", t.lower())}
        hints = vocab.LANGUAGE_HINTS
        self.hinted = list(dict.fromkeys(lang for word, lang in hints.items() if word in words))
        self.lang = ""
        self.index = 0
        self.wants_table = bool(_TABLE_ASK.search(prompt[:_TOPIC_SCAN]))

    # --- grammar ---

    def topic(self) -> str:
        # A deck rather than random picks, so every topic of the prompt gets mentioned.
        if not self.deck:
            self.deck = self.rng.sample(self.others, len(self.others))
            # The first mention (the intro's) is the main subject; later rounds are shuffled.
            self.deck.insert(
                self.rng.randint(0, len(self.deck)) if self.seen else len(self.deck), self.primary
            )
            self.seen = True
        return self.deck.pop()

    def expand(self, template: str, depth: int = 0) -> str:
        def slot(match: re.Match[str]) -> str:
            return self.slot(match.group(1), depth) or match.group()

        return _SLOT.sub(slot, template)

    def slot(self, name: str, depth: int) -> str:
        rng = self.rng
        if name in ("t", "topic"):
            return self.topic()
        if name == "ident":
            return self.ident
        if name == "Ident":
            return "".join(part.capitalize() for part in self.ident.split("_"))
        if name == "T":
            form = rng.choice(("{}", "{}", "{}", "**{}**", "*{}*", "`{}`"))
            return form.format(self.topic())
        if name == "id":
            suffix = rng.choice(("timeout", "limit", "enabled", "max_retries", "batch_size"))
            return f"`{self.ident}_{suffix}`"
        if name == "link":
            text = self.expand(rng.choice(self.vocab.grammar["link_text"]), depth + 1)
            section = rng.choice(("docs", "guides", "blog", "reference"))
            return f"[{text}](https://example.com/{section}/{self.ident.replace('_', '-')})"
        if name == "num":
            return str(rng.choice((3, 5, 8, 10, 30, 60, 100, 250, 1000)))
        if name == "ms":
            return f"{rng.choice((2, 5, 15, 40, 120, 300))} ms"
        if name == "lang":
            return vocab.LANGUAGE_NAMES[self.lang]
        if name == "index":
            self.index += 1
            return str(self.index)
        if name in self.vocab.grammar and depth < 4:
            return self.expand(rng.choice(self.vocab.grammar[name]), depth + 1)
        return ""

    def say(self, symbol: str) -> str:
        text = self.expand(self.rng.choice(self.vocab.grammar[symbol]))
        # A topic copied from the prompt may open the sentence in lower case.
        return text[:1].upper() + text[1:] if text[:1].islower() else text

    # --- paragraphs ---

    def paragraph(self, first: str, budget: int, tolerance: int) -> str:
        """Sentences filling `budget` tokens to within `tolerance`, starting with `first`."""
        sentences: list[str] = []
        used = misses = 0
        symbol = first
        while budget - used > tolerance and misses < 12:
            sentence = self.say(symbol)
            cost = count_tokens(sentence)
            if used + cost <= budget + tolerance and sentence not in sentences:
                sentences.append(sentence)
                used += cost
            else:
                misses += 1
            symbol = "short" if budget - used < 16 or misses > 3 else "sentence"
        if budget - used > tolerance:
            sentences.append(self.clipped(self.say("sentence"), budget - used))
        return self.vocab.joiner.join(s for s in sentences if s)

    def clipped(self, sentence: str, size: int) -> str:
        """`sentence` without markup, cut at a word boundary to about `size` tokens."""
        plain = _MARKUP.sub(lambda m: m.group(1) or "", sentence).rstrip(".。")
        pieces = tokenize(plain)
        cut = min(max(size - 1, 0), len(pieces))
        if self.vocab.joiner:
            # Never end inside a word: back up to a piece that starts with a space.
            while 1 < cut < len(pieces) and not pieces[cut][0].isspace():
                cut -= 1
        text = "".join(pieces[:cut]).rstrip(" ,;:—、")
        return text + self.vocab.full_stop if text else ""

    # --- blocks: each returns None when it cannot fit in `budget` tokens ---

    def heading(self) -> str:
        return f"{'#' * self.rng.choice((2, 2, 3))} {self.say('heading')}"

    def bullets(self, budget: int) -> str | None:
        numbered = self.rng.random() < 0.4
        marker = "1." if numbered else self.rng.choice(("-", "-", "*"))
        indent = " " * (len(marker) + 1)
        nest_at = self.rng.randrange(4) if self.rng.random() < 0.4 else -1
        lines: list[str] = []
        for n in range(self.rng.randint(3, 5)):
            mark = f"{n + 1}." if numbered else marker
            item = [f"{mark} {self.say('item')}"]
            if n == nest_at:
                item += [f"{indent}- {self.say('subitem')}" for _ in range(self.rng.randint(2, 3))]
            if count_tokens("\n".join(lines + item)) > budget:
                break
            lines += item
        return "\n".join(lines) if len(lines) >= 2 else None

    def table(self, budget: int) -> str | None:
        schema = self.rng.choice(self.vocab.tables)
        self.index = 0
        aligned = self.rng.random() < 0.4
        rules = {"l": ":---", "r": "---:", "c": ":---:"}
        separator = [rules[a] if aligned else "---" for a in schema.aligns]
        lines = [_row([self.expand(h) for h in schema.headers]), _row(separator)]
        seen: set[str] = set()
        for _ in range(self.rng.randint(2, 5)):
            cells = [self.expand(cell) for cell in schema.cells]
            # One redraw when a row repeats its label; the index column never repeats.
            at = 1 if schema.cells[0] == "{index}" else 0
            if cells[at] in seen:
                cells[at:] = [self.expand(cell) for cell in schema.cells[at:]]
            seen.add(cells[at])
            row = _row(cells)
            if count_tokens("\n".join([*lines, row])) > budget:
                break
            lines.append(row)
        return "\n".join(lines) if len(lines) >= 4 else None

    def code(self, budget: int) -> str | None:
        languages = list(vocab.CODE)
        self.rng.shuffle(languages)
        languages = self.hinted + [lang for lang in languages if lang not in self.hinted]
        for language in languages:
            self.lang = language
            source = self.rng.choice(vocab.CODE[language])
            block = f"{self.say('code_lead')}\n\n```{language}\n{self.expand(source)}\n```"
            if count_tokens(block) <= budget:
                return block
        return None

    def quote(self, budget: int) -> str | None:
        block = "> " + self.say("quote")
        return block if count_tokens(block) <= budget else None

    def prose(self, budget: int) -> str | None:
        if budget < 20:
            return None
        return self.paragraph("sentence", self.rng.randint(20, min(budget, 70)), 4)

    # --- whole answers ---

    def markdown(self, target: int) -> str:
        draft = _Draft()
        tolerance = max(2, target // 20)
        reserve = min(max(target // 10, 6), 30)
        draft.add(self.paragraph("intro", min(max(target // 5, 8), 60, target), tolerance))
        if self.wants_table:
            # Room for a header and two rows at least: asked for a table, a short answer
            # runs a little long rather than leave it out.
            table = self.table(max(target - reserve - draft.tokens - 1, _SMALLEST_TABLE))
            if table is not None:
                draft.add(table)
        kinds: dict[str, Callable[[int], str | None]] = {
            "code": self.code,
            "list": self.bullets,
            "table": self.table,
            "quote": self.quote,
            "prose": self.prose,
        }
        headings = misses = 0
        # Until the first code block lands, other blocks leave room for one.
        code_room = 110 if target >= 150 else 0
        for kind in self.plan():
            budget = target - reserve - draft.tokens - 1
            if budget <= 10 or misses > 8:
                break
            if kind != "code":
                budget -= code_room
            heading = ""
            if self.rng.random() < 0.55:
                heading = self.heading() if headings else f"## {self.say('heading')}"
                budget -= count_tokens(heading) + 1
            block = kinds[kind](budget) if budget > 10 else None
            if block is None:
                misses += 1
                continue
            if heading:
                headings += 1
                draft.add(heading)
            draft.add(block)
            if kind == "code":
                code_room = 0
        budget = target - draft.tokens - 1
        if budget > tolerance:
            draft.add(self.paragraph("closing", budget, tolerance))
        return draft.text()

    def plan(self) -> Iterator[str]:
        """Block kinds, endlessly: code early, and usually a list or table by the third."""
        first = True
        while True:
            kinds = ["list", "list", "table", "prose", "prose", "quote"]
            self.rng.shuffle(kinds)
            if first and not {"list", "table"} & set(kinds[:2]) and self.rng.random() < 0.9:
                kinds.insert(1, self.rng.choice(("list", "table")))
            kinds.insert(self.rng.randint(0, 1 if first else len(kinds)), "code")
            first = False
            yield from kinds

    def hostile(self, target: int) -> str:
        draft = _Draft()
        tolerance = max(2, target // 20)
        draft.add(self.paragraph("intro", min(max(target // 12, 8), 40, target), tolerance))
        tail = [
            self.expand(self.rng.choice(vocab.HOSTILE_UNTERMINATED_BOLD)),
            self.expand(self.rng.choice(vocab.HOSTILE_UNTERMINATED_FENCE)),
        ]
        room = target - draft.tokens - sum(count_tokens(t) + 1 for t in tail)
        picked: list[str] = []
        # The core constructs may overdraw a little (the tolerance is ±15%); extras stop short
        # of the whole budget so ordinary text can sit between them.
        core, extras = (
            (vocab.HOSTILE_REQUIRED, -(target // 10)),
            (vocab.HOSTILE_EXTRAS, target // 3),
        )
        for group, keep in (core, extras):
            for variants in self.rng.sample(group, len(group)):
                snippet = self.expand(self.rng.choice(variants))
                if count_tokens(snippet) + 1 <= room - keep:
                    picked.append(snippet)
                    room -= count_tokens(snippet) + 1
        self.rng.shuffle(picked)
        for snippet in picked:
            draft.add(snippet)
            if room > 30 and self.rng.random() < 0.5:
                filler = self.bullets(min(room - 1, 50)) if self.rng.random() < 0.3 else None
                filler = filler or self.paragraph("sentence", min(room - 1, 30), tolerance)
                draft.add(filler)
                room -= count_tokens(filler) + 1
        while room > 100:
            filler = self.paragraph("sentence", self.rng.randint(30, 70), 4)
            draft.add(filler)
            room -= count_tokens(filler) + 1
        if room - 1 > tolerance:
            draft.add(self.paragraph("closing", room - 1, tolerance))
        for piece in tail:
            draft.add(piece)
        return draft.text()


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


class _Draft:
    """Blocks separated by blank lines, with a running token count.

    A blank line is one token and always splits, so counts add up without re-tokenizing.
    """

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.tokens = 0

    def add(self, block: str) -> None:
        if not block:
            return
        self.tokens += count_tokens(block) + (1 if self.blocks else 0)
        self.blocks.append(block)

    def text(self) -> str:
        return "\n\n".join(self.blocks)
