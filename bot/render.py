"""Render an Answer into Discord payload pieces: plain embed dicts, always within Discord's limits.

Pure functions, no discord import at module level (``to_embed`` imports it lazily). Article text is
untrusted: it is markdown-escaped and its mentions are neutralised even though the bot also sends
``AllowedMentions.none()`` (defence in depth). Discord counts lengths in code points (``len``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from embeddings.models import NOT_FOUND, NOT_FOUND_HINT, Answer, Citation, PassageHit

if TYPE_CHECKING:
    import discord


@dataclass(frozen=True)
class Limits:
    content: int = 2000
    embeds: int = 10
    title: int = 256
    description: int = 4096
    fields: int = 25
    field_name: int = 256
    field_value: int = 1024
    footer: int = 2048
    author: int = 256
    total: int = 6000


LIMITS = Limits()

ELLIPSIS = "…"
ZWSP = "\u200b"

# Confidence (a calibrated probability that the articles hold the answer; answered from
# RetrievalParams.answer_threshold up) -> label and embed colour.
HIGH_CONFIDENCE = 0.85
MEDIUM_CONFIDENCE = 0.65
COLOURS = {"High": 0x2ECC71, "Medium": 0xF1C40F, "Low": 0x95A5A6, "none": 0x747F8D}

ANSWER_BUDGET = 1500  # characters of (escaped) answer sentences in the description
EXCERPT_WINDOW = 700  # characters of raw passage shown around the answer
SOURCE_EXCERPT = 300  # characters of raw passage per entry in render_sources

# Markdown escaping with discord.utils.escape_markdown's semantics (as_needed=False, ignore_links=True):
# URLs are left alone, every markdown character and line-start construct gets a backslash.
_URL = r"(?P<url><[^: >]+:\/[^ >]+>|(?:https?|steam):\/\/[^\s<]+[^<.,:;\"\'\]\s])"
_MD_COMMON = r"^>(?:>>)?\s|\[.+\]\(.+\)|^#{1,3}|^\s*-"
_MARKDOWN = re.compile(rf"(?:{_URL}|(?P<markdown>[_\\~|\*`]|{_MD_COMMON}))", re.MULTILINE)
# Mentions: @everyone/@here, <@id> <@!id> <@&id> <#id>, and bare @id (what escape_mentions covers).
_EVERYONE = re.compile(r"@(everyone|here)")
_BRACKETED = re.compile(r"<(@[!&]?|#)(\d+)>")
_BARE_ID = re.compile(r"@([!&]?\d{17,20})")
_TRAILING_JOINERS = "\u200d\ufe0f\ufe0e"


# ---- text primitives ----------------------------------------------------------------------------


def plural(n: int, word: str) -> str:
    """"1 passage", "2 passages": counts as people write them."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def neutralise_mentions(text: str) -> str:
    """Make @everyone/@here and user/role/channel mentions inert with a zero-width space."""
    text = _EVERYONE.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)
    text = _BRACKETED.sub(lambda m: f"<{m.group(1)}{ZWSP}{m.group(2)}>", text)
    return _BARE_ID.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)


def escape_markdown(text: str) -> str:
    """Escape Discord markdown (discord.utils.escape_markdown semantics) and neutralise mentions."""
    escaped = _MARKDOWN.sub(lambda m: m.group("url") or "\\" + m.group("markdown"), text)
    return neutralise_mentions(escaped)


def _drop_dangling_escape(text: str) -> str:
    """An odd run of trailing backslashes ends in half an escape pair: drop that backslash."""
    run = len(text) - len(text.rstrip("\\"))
    return text[:-1] if run % 2 else text


def trim(text: str, limit: int, *, ellipsis: str = ELLIPSIS) -> str:
    """Shorten ``text`` to at most ``limit`` characters, cutting at a word boundary (a hard cut only
    when the last word would lose over half the text) and ending with ``ellipsis``. Never leaves half
    an escape sequence (a trailing lone backslash) or a dangling zero-width joiner."""
    if len(text) <= limit:
        return text
    if limit <= len(ellipsis):
        return ellipsis[: max(limit, 0)]
    cut = limit - len(ellipsis)
    head = text[:cut]
    if not text[cut].isspace():  # cutting inside a word: back off to the last whitespace
        space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
        if space > cut // 2:
            head = head[:space]
    head = head.rstrip().rstrip(_TRAILING_JOINERS)
    head = _drop_dangling_escape(head)
    return head + ellipsis


def _plain(text: str, limit: int) -> str:
    """Untrusted single-line text (titles, names): collapse whitespace, escape, trim."""
    return trim(escape_markdown(" ".join(text.split())), limit)


def confidence_label(confidence: float) -> str:
    if confidence >= HIGH_CONFIDENCE:
        return "High"
    if confidence >= MEDIUM_CONFIDENCE:
        return "Medium"
    return "Low"


# ---- passages -----------------------------------------------------------------------------------


def _marks(answer: Answer, passage: PassageHit) -> list[tuple[int, int]]:
    """Answer-sentence spans inside this passage (offsets into passage.text), clamped and merged."""
    n = len(passage.text)
    spans = sorted(
        (max(0, min(s.start, n)), max(0, min(s.end, n)))
        for s in answer.sentences
        if answer.found and s.passage_id == passage.passage_id
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _snap_left(text: str, i: int) -> int:
    """Move a window start forward to the next word start (unless that skips too much)."""
    if i <= 0:
        return 0
    j = i
    while j < len(text) and not text[j - 1].isspace() and j - i < 40:
        j += 1
    return j if j - i < 40 else i


def _snap_right(text: str, i: int) -> int:
    """Move a window end back to the previous word end (unless that loses too much)."""
    if i >= len(text):
        return len(text)
    j = i
    while j > 0 and not text[j].isspace() and i - j < 40:
        j -= 1
    return j if i - j < 40 else i


def _window(text: str, marks: list[tuple[int, int]], size: int) -> tuple[int, int]:
    """A ``size``-character window of ``text`` centred on the marked span (or its start)."""
    if len(text) <= size:
        return 0, len(text)
    lo, hi = (marks[0][0], marks[-1][1]) if marks else (0, 0)
    if hi - lo >= size:
        start, end = lo, lo + size
    else:
        pad = (size - (hi - lo)) // 2
        start = max(0, lo - pad)
        end = min(len(text), start + size)
        start = max(0, end - size)
    start = start if start == 0 or start == lo else _snap_left(text, start)
    end = end if end == len(text) or end == hi else _snap_right(text, end)
    return start, max(end, start)


def _snap_start(raw: str, k: int) -> str:
    """``raw[k:]`` moved forward to the next word start (if one is near) and without leading joiners."""
    if k > 0 and not raw[k - 1].isspace():
        for j in range(k, min(len(raw), k + 40)):
            if raw[j].isspace():
                k = j + 1
                break
    return raw[k:].lstrip().lstrip(_TRAILING_JOINERS)


def _left_fit(raw: str, n: int) -> str:
    """Escaped ``raw`` cut from the left (word boundary, "…" first) to at most ``n`` characters. The
    raw text is cut before escaping, so no escape pair can lose its backslash."""
    esc = escape_markdown(raw)
    if len(esc) <= n:
        return esc
    if n <= len(ELLIPSIS):
        return ""

    def fits(k: int) -> bool:
        return len(ELLIPSIS) + len(escape_markdown(_snap_start(raw, k))) <= n

    lo, hi = 0, len(raw)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    while lo < len(raw) and not fits(lo):  # escaping is not strictly monotonic (URLs): make sure
        lo += 1
    return ELLIPSIS + escape_markdown(_snap_start(raw, lo))


def _marked(text: str, marks: list[tuple[int, int]], lo: int, hi: int, marker: str = "__") -> str:
    """text[lo:hi] escaped, each mark in ``marker`` (__underline__, **bold**; whitespace kept outside)."""
    out, pos = [], lo
    for s, e in marks:
        raw = text[s:e]
        core = raw.strip()
        out.append(escape_markdown(text[pos:s]))
        if core:
            lpad, rpad = raw[: len(raw) - len(raw.lstrip())], raw[len(raw.rstrip()) :]
            out.append(f"{lpad}{marker}{escape_markdown(core)}{marker}{rpad}")
        else:
            out.append(raw)
        pos = e
    out.append(escape_markdown(text[pos:hi]))
    return "".join(out)


def excerpt(text: str, marks: list[tuple[int, int]], budget: int, *, window: int = EXCERPT_WINDOW,
            marker: str = "__") -> str:
    """The passage around the marked spans (offsets into ``text``), escaped, marks in ``marker``,
    at most ``budget`` characters, "…" where the passage is cut. Context before the mark is cut from
    the left, context after it from the right; the mark itself is shortened only if it alone is long."""
    if budget <= 0:
        return ""
    start, end = _window(text, marks, window)
    marks = [(max(s, start), min(e, end)) for s, e in marks if min(e, end) > max(s, start)]
    lead = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < len(text) else ""
    if not marks:
        body = lead + escape_markdown(text[start:end]).lstrip()
        return body + tail if len(body) + len(tail) <= budget else trim(body, budget)
    lo, hi = marks[0][0], marks[-1][1]
    mid = _marked(text, marks, lo, hi, marker)
    cap = max(budget * 2 // 3, min(budget, 24))
    if len(mid) > cap:
        mid = marker + trim(escape_markdown(" ".join(text[lo:hi].split())), cap - 2 * len(marker)) + marker
        if len(mid) > budget:
            return trim(escape_markdown(" ".join(text[lo:hi].split())), budget)
    pre_raw, post_raw = text[start:lo], text[hi:end]
    pre, post = escape_markdown(pre_raw), escape_markdown(post_raw)
    room = budget - len(mid) - len(lead) - len(tail)
    if len(pre) + len(post) > room:
        room += len(lead) + len(tail)  # the fitted pieces bring their own ellipses
        pre_full = lead + pre
        pre_room = min(len(pre_full), max(room // 3, room - len(post) - len(tail)))
        pre = pre_full if len(pre_full) <= pre_room else _left_fit(pre_raw, pre_room)
        post = trim(post + tail, room - len(pre))
        lead = tail = ""
    return lead + pre + mid + post + tail


def _link_text(text: str) -> str:
    return escape_markdown(text).replace("[", "\\[").replace("]", "\\]")


def _safe_url(url: str) -> str:
    return quote(url, safe=":/?#@!$&'*+,;=%-._~")


def citation_line(citation: Citation, limit: int = LIMITS.field_value) -> str:
    """ "[Title](url) · Outlet · date · paragraph N" (title plain when there is no URL), ≤ ``limit``."""
    meta = [escape_markdown(" ".join(x.split())) for x in (citation.outlet, citation.published) if x]
    meta.append(f"paragraph {citation.paragraph}")
    tail = " · " + " · ".join(meta)
    tail = trim(tail, limit // 2)
    room = limit - len(tail)
    title = " ".join((citation.title or citation.source or "Untitled").split())
    url = citation.url
    if url and len(_safe_url(url)) + 4 + min(len(title), 40) <= room:
        link_url = _safe_url(url)
        return f"[{trim(_link_text(title), room - len(link_url) - 4)}]({link_url}){tail}"
    return trim(escape_markdown(title), room) + tail


# ---- embeds -------------------------------------------------------------------------------------


def embed_length(embed: dict[str, Any]) -> int:
    """Characters counted towards Discord's 6,000 total."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields") or [])
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    return total


def _fit_total(embed: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence (budgets normally make it a no-op): shrink the longest text until the
    embed is within 6,000 characters."""
    while (over := embed_length(embed) - LIMITS.total) > 0:
        slots = [(len(embed.get("description") or ""), embed, "description")]
        slots += [(len(f["value"]), f, "value") for f in embed.get("fields") or []]
        size, holder, key = max(slots, key=lambda t: t[0])
        holder[key] = trim(holder[key], max(size - over, 1))
    return embed


def render_answer(answer: Answer) -> dict[str, Any]:
    """The answer as an embed dict: question as title; the passage around the answer with the answer
    sentence(s) in bold, shown once (only the sentences alone, bold, when they come from several passages);
    a Source field; the confidence as a plain label in the footer. Not found: the honest NOT_FOUND message
    (the caller offers the closest passages).
    A follow-up read in the light of the conversation says how in the footer ("read as: ...")."""
    title = _plain(answer.question, LIMITS.title)
    if not answer.found or not answer.sentences:
        return _titled(title, not_found(answer))
    label = confidence_label(answer.confidence)
    bold = trim(escape_markdown(" ".join(answer.text.split())), ANSWER_BUDGET)
    description = f"**{bold}**" if bold else ""
    fields: list[dict[str, Any]] = []
    passage = answer.best_passage
    if passage is not None:
        marks = _marks(answer, passage)
        in_passage = all(s.passage_id == passage.passage_id for s in answer.sentences)
        if in_passage and marks and passage.text.strip():
            description = excerpt(passage.text, marks, LIMITS.description - 100, marker="**").strip()
        fields.append({"name": "Source", "value": citation_line(passage.citation), "inline": False})
    others = len(answer.passages) - 1
    footer = f"{label} confidence"
    if others > 0:
        footer += f" · {others} more passage{'s' if others != 1 else ''} under Sources"
    if answer.interpreted_as:  # a follow-up read in the light of the thread: say how
        footer = f"read as: {_plain(answer.interpreted_as, 200)} · {footer}"
    embed = {
        "description": description or NOT_FOUND,
        "color": COLOURS[label],
        "fields": fields,
        "footer": {"text": trim(footer, LIMITS.footer)},
    }
    return _fit_total(_titled(title, embed))


# What the bot says where it has no article at all to read (a new server, an index emptied by /forget).
NO_ARTICLES = "I have no articles here yet: a member with **Manage Server** can add some with `/ingest`."


def not_found(answer: Answer) -> dict[str, Any]:
    """NOT_FOUND, and when the core named the closest articles (Answer.suggestions) a field listing them
    and the hint to name the person or place in the footer: a way on instead of a dead end. No passage at
    all came back only when no article can be read here: then say how to add one, not "rephrase"."""
    description = NOT_FOUND if answer.passages else f"{NOT_FOUND} {NO_ARTICLES}"
    embed: dict[str, Any] = {"description": description, "color": COLOURS["none"]}
    titles = [f"• {_plain(t, 200)}" for t in answer.suggestions[:5]]
    if titles:
        embed["fields"] = [{"name": "Closest articles", "value": "\n".join(titles), "inline": False}]
        embed["footer"] = {"text": NOT_FOUND_HINT}
    return embed


def _titled(title: str, embed: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, **embed} if title else embed


def render_sources(answer: Answer, n: int = 5) -> dict[str, Any]:
    """An embed listing the top ``n`` passages: "i. Title" by rank (the answer's own passage labelled, no raw
    scores) and an excerpt plus citation link,
    each field and the whole embed within Discord's limits."""
    n = max(1, min(n, LIMITS.fields))
    passages = answer.passages[:n]
    title = _plain(f"Closest passages: {' '.join(answer.question.split())}", LIMITS.title)
    intro = "" if answer.found else "Not an answer: the passages closest to your question."
    if not passages:
        return _titled(title, {"description": "No passages to show.", "color": COLOURS["none"]})
    # Names take at most half of what the title and intro leave, values share the rest.
    name_cap = min(
        LIMITS.field_name, max(24, (LIMITS.total - len(title) - len(intro)) // (2 * len(passages)))
    )
    names = []
    best = answer.best_passage if answer.found else None
    for i, p in enumerate(passages, 1):
        score = " · the answer's source" if best is not None and p.passage_id == best.passage_id else ""
        label = _plain(p.citation.title or p.citation.source or "Untitled", LIMITS.field_name)
        names.append(trim(f"{i}. {label}", name_cap - len(score)) + score)
    spare = LIMITS.total - len(title) - len(intro) - sum(map(len, names))
    per_value = max(60, min(LIMITS.field_value, spare // len(passages)))
    fields = []
    for name, p in zip(names, passages, strict=True):
        cite = citation_line(p.citation, limit=per_value // 2)
        room = per_value - len(cite) - 1
        body = excerpt(p.text, _marks(answer, p), room, window=SOURCE_EXCERPT) if room > 20 else ""
        fields.append({"name": name, "value": trim(f"{body}\n{cite}".strip(), per_value), "inline": False})
    embed: dict[str, Any] = {"color": COLOURS["none"], "fields": fields}
    if intro:
        embed["description"] = intro
    return _fit_total(_titled(title, embed))


def to_embed(data: dict[str, Any]) -> discord.Embed:
    """Adapter for discord.py (imported lazily so this module stays pure)."""
    import discord

    return discord.Embed.from_dict(data)
