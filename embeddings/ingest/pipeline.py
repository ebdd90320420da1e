"""Articles in: expand inputs, read or fetch, extract, chunk, embed only what is new, commit in batches."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.encoders.base import Encoder
from embeddings.errors import FetchError, InputError, QabotError, UnsupportedInput, user_message
from embeddings.ingest.fetch import fetch_url
from embeddings.models import BASE_SCOPE
from embeddings.store.base import IndexBackend, keyword_text, now_iso
from embeddings.store.records import NewDocument, NewPassage, PassageVectors
from embeddings.text.chunking import chunk_document
from embeddings.text.extract import (
    MAX_INPUT_BYTES,
    SUPPORTED_EXTENSIONS,
    Deadline,
    ExtractedArticle,
    article_from_paragraphs,
    extract,
    kind_for_path,
)

# Batches are embedded, then committed one at a time: a crash loses at most the batch in flight and the one
# being read (committed ones are durable, and ingesting the same files again skips them).
COMMIT_EVERY_PASSAGES = 256
SENTENCE_POOLING = True
# Reading and chunking one upload (ingest_bytes) may take at most this long, then it fails with one line:
# every step is linear, so only a pathological input gets near it, and the bot's other users never wait on it.
UPLOAD_TIME_BUDGET_S = 20.0


@dataclass(frozen=True)
class SourceRef:
    name: str        # what the user typed (or the attachment's name)
    canonical: str   # absolute path or URL: the document's identity within its scope
    is_url: bool


@dataclass(frozen=True)
class Failure:
    name: str
    message: str


@dataclass(frozen=True)
class DocOutcome:
    name: str
    doc_key: str
    title: str
    status: str  # "added" | "updated" | "unchanged" | "removed"
    passages: int
    # Added with the very text of a document already here from another source (a file and its saved copy, an
    # upload and its URL): that document's source. Both are kept (removing one must not lose the other's
    # text); answers show each passage once.
    same_text_as: str = ""


@dataclass(frozen=True)
class IngestReport:
    outcomes: tuple[DocOutcome, ...] = ()
    failures: tuple[Failure, ...] = ()
    embedded: int = 0   # passages whose embedding was computed now
    reused: int = 0     # passages whose embedding was already stored (same content hash)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass(frozen=True)
class EmbedJob:
    """One passage to embed: its hash, the text the passage vector is made from (headline + passage),
    and its sentences (embedded on their own for answer selection)."""

    hash: str
    text: str
    sentences: tuple[str, ...]


@dataclass
class _Pending:
    ref: SourceRef
    doc: NewDocument
    status: str
    missing: list[EmbedJob] = field(default_factory=list)
    jobs: dict[str, EmbedJob] = field(default_factory=dict)  # every passage's, by hash (missing or not)


def _done(value: dict[str, PassageVectors]) -> Future[dict[str, PassageVectors]]:
    future: Future[dict[str, PassageVectors]] = Future()
    future.set_result(value)
    return future


def embed_passages(encoder: Encoder, jobs: Sequence[EmbedJob], *, pooled: bool | None = None) -> dict[str, PassageVectors]:
    """Passage and sentence vectors of each job.

    Pooled (the default when the encoder exposes token embeddings): one forward pass per passage; the
    passage vector is the mean of all its tokens (exactly what encode() returns) and each sentence vector
    the mean of the tokens inside that sentence, so sentences cost no second pass. Otherwise passages and
    sentences are encoded in one call, so length-sorted batching spans both."""
    # (a LazyEncoder always has the method; whether it works depends on the model it loads)
    token_fn = getattr(getattr(encoder, "loaded", encoder), "token_embeddings", None)
    if pooled is None:
        pooled = SENTENCE_POOLING
    tokens = None
    if pooled and token_fn is not None:
        try:
            tokens = token_fn([j.text for j in jobs])
        except QabotError:  # a model without plain token outputs (e.g. a custom pooling stack)
            tokens = None
    if tokens is None:
        texts = [j.text for j in jobs] + [s for j in jobs for s in j.sentences]
        vecs = encoder.encode(texts)
        out: dict[str, PassageVectors] = {}
        pos = len(jobs)
        for i, j in enumerate(jobs):
            out[j.hash] = PassageVectors(vecs[i], vecs[pos:pos + len(j.sentences)])
            pos += len(j.sentences)
        return out
    out = {}
    leftovers: list[tuple[str, int, str]] = []  # sentences cut off by truncation: encoded on their own
    for j, (hidden, offsets) in zip(jobs, tokens, strict=True):
        passage = _unit(hidden.mean(axis=0))
        sents = np.zeros((len(j.sentences), hidden.shape[1]), dtype=np.float32)
        starts, ends = offsets[:, 0], offsets[:, 1]
        real = ends > starts  # special tokens ([CLS], [SEP]) have empty spans
        cursor = 0
        for k, sentence in enumerate(j.sentences):
            at = j.text.find(sentence, cursor)
            if at < 0:
                leftovers.append((j.hash, k, sentence))
                continue
            cursor = at + len(sentence)
            inside = real & (starts >= at) & (ends <= cursor)
            if inside.any():
                sents[k] = _unit(hidden[inside].mean(axis=0))
            else:
                leftovers.append((j.hash, k, sentence))
        out[j.hash] = PassageVectors(passage, sents)
    if leftovers:
        vecs = encoder.encode([s for _, _, s in leftovers])
        for (h, k, _), v in zip(leftovers, vecs, strict=True):
            out[h].sentences[k] = v
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def doc_key_for(scope: str, canonical: str) -> str:
    return hashlib.sha1(f"{scope}\0{canonical}".encode()).hexdigest()[:12]


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def expand_inputs(inputs: Iterable[str]) -> tuple[list[SourceRef], list[Failure]]:
    """Files, folders (recursive, supported types only) and URLs; each problem becomes one Failure."""
    refs: list[SourceRef] = []
    failures: list[Failure] = []
    seen: set[str] = set()

    def add(ref: SourceRef) -> None:
        if ref.canonical not in seen:  # the same file named twice is ingested once
            seen.add(ref.canonical)
            refs.append(ref)

    for raw in inputs:
        item = raw.strip()
        try:
            if not item:
                failures.append(Failure(repr(raw), "empty input name"))
            else:
                _expand_one(item, add, failures)
        except OSError as exc:  # e.g. a name too long for the file system: this input fails, the others go on
            failures.append(Failure(_printable(item), f"cannot read: {exc.strerror or exc}"))
    return refs, failures


def _printable(name: str) -> str:
    """The name as a user can read it: undecodable bytes (kept as surrogates) as \\xNN, controls as '?'."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in name)


def _bad_name(name: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8; rename the file"
    return None


def _expand_one(item: str, add: Callable[[SourceRef], None], failures: list[Failure]) -> None:
    if (why := _bad_name(item)) is not None:
        failures.append(Failure(_printable(item), why))
    elif is_url(item):
        add(SourceRef(item, item, True))
    elif "://" in item:
        failures.append(Failure(item, "only http:// and https:// URLs can be ingested"))
    else:
        try:
            path = Path(item).expanduser()
        except RuntimeError:  # ~name of a user that does not exist
            failures.append(Failure(item, f"no such user {item.split('/', 1)[0]!r}"))
            return
        if not path.exists():
            failures.append(Failure(item, "no such file or directory"))
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                failures.append(Failure(item, f"no {', '.join(SUPPORTED_EXTENSIONS)} files in this folder"))
            for f in files:
                if (why := _bad_name(str(f))) is not None:
                    failures.append(Failure(_printable(str(f)), why))
                else:
                    add(SourceRef(str(f), str(f.resolve()), False))
        else:
            try:
                kind_for_path(str(path))
            except InputError as exc:
                failures.append(Failure(item, _strip_name(str(exc), item)))
                return
            if not path.is_file():  # a FIFO would block the read forever, a device never end
                failures.append(Failure(item, "not a regular file"))
                return
            add(SourceRef(item, str(path.resolve()), False))


def _strip_name(message: str, name: str) -> str:
    # extract/fetch messages start with the name already; Failure carries it separately.
    for prefix in (f"{name}: ", f"{Path(name).name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def read_source(ref: SourceRef, *, allow_private_urls: bool = False,
                fetch: Callable[..., object] = fetch_url) -> ExtractedArticle:
    if ref.is_url:
        page = fetch(ref.canonical, allow_private=allow_private_urls)
        ctype = getattr(page, "content_type", "")
        if "html" in ctype or ctype == "application/xhtml+xml":
            kind = "html"
        elif ctype.startswith("text/"):
            kind = "markdown" if "markdown" in ctype else "text"
        else:
            raise FetchError(f"{ref.name}: unsupported content type {ctype or 'unknown'} (expected HTML or text)")
        return extract(page.body, kind=kind, name=ref.name, charset=getattr(page, "charset", None),  # type: ignore[attr-defined]
                       url=getattr(page, "url", ref.canonical))
    return extract(_read_file(ref), kind=kind_for_path(ref.canonical), name=ref.name)


def _read_file(ref: SourceRef) -> bytes:
    """At most MAX_INPUT_BYTES of a regular file. Opened non-blocking and checked after opening, so a FIFO
    (or a file swapped for one) cannot hang the read, and at most limit + 1 bytes are read whatever size
    the file reports (a symlink to /dev/zero reports 0)."""
    too_big = f"{ref.name}: over the {MAX_INPUT_BYTES // 2**20} MB limit"
    fd = os.open(ref.canonical, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedInput(f"{ref.name}: not a regular file")
        if st.st_size > MAX_INPUT_BYTES:
            raise UnsupportedInput(f"{ref.name}: {st.st_size / 1e6:.1f} MB is over the "
                                   f"{MAX_INPUT_BYTES // 2**20} MB limit")
        try:
            data = fh.read(MAX_INPUT_BYTES + 1)
        except BlockingIOError as exc:  # pragma: no cover - regular files do not block
            raise OSError(errno.EAGAIN, "the file is not ready to be read") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise UnsupportedInput(too_big)
    return data


class Ingestor:
    def __init__(self, index: IndexBackend, *, allow_private_urls: bool = False,
                 fetch: Callable[..., object] = fetch_url) -> None:
        self.index = index
        self.allow_private_urls = allow_private_urls
        self._fetch = fetch

    def _embed_hash(self, embed_input: str) -> str:
        return hashlib.sha256(f"{self.index.config.model}\0{embed_input}".encode()).hexdigest()[:32]

    def prepare(self, ref: SourceRef, article: ExtractedArticle, scope: str,
                deadline: Deadline | None = None) -> _Pending:
        enc = self.index.encoder
        content_hash = hashlib.sha256(f"{article.title}\0{article.text}".encode()).hexdigest()[:32]
        existing = self.index.store.document_by_source(scope, ref.canonical)
        status = "added" if existing is None else ("unchanged" if existing.content_hash == content_hash else "updated")
        if (status == "unchanged" and existing is not None
                and self.index.store.count_passages_without_embedding([existing.id])):
            status = "updated"  # its passages lost their embeddings (an older qabot's bug): embed them again
        title_tokens = enc.count_tokens(article.title) if article.title else 0
        chunks = [] if status == "unchanged" else chunk_document(
            article.text, enc.count_tokens, self.index.config.chunking, reserved_tokens=title_tokens,
            deadline=deadline)
        passages = []
        jobs: dict[str, EmbedJob] = {}
        for c in chunks:
            embed_input = keyword_text(article.title, c.text)
            h = self._embed_hash(embed_input)
            jobs[h] = EmbedJob(h, embed_input, tuple(article.text[s.start:s.end] for s in c.sentences))
            passages.append(NewPassage(c.ordinal, c.paragraph, c.start, c.end, c.text, h,
                                       tuple((s.start, s.end) for s in c.sentences)))
        doc = NewDocument(
            doc_key=doc_key_for(scope, ref.canonical), scope=scope, source=ref.canonical,
            title=article.title or Path(ref.name).stem, outlet=article.outlet, published=article.published,
            ingested_at=now_iso(), content_hash=content_hash, text=article.text, passages=tuple(passages),
        )
        stored = self.index.store.existing_hashes(jobs)
        return _Pending(ref, doc, status, [j for h, j in jobs.items() if h not in stored], jobs)

    def ingest(self, inputs: Sequence[str], *, scope: str = BASE_SCOPE, progress: bool | None = None,
               on_commit: Callable[[Sequence[DocOutcome]], None] | None = None) -> IngestReport:
        refs, failures = expand_inputs(inputs)
        return self._run([(ref, None) for ref in refs], failures, scope, progress, on_commit)

    def ingest_urls(self, urls: Sequence[str], *, scope: str = BASE_SCOPE) -> IngestReport:
        """Web addresses only, never a path: for inputs from people who may not read the host's files
        (Discord). Anything that is not an http(s) URL is a failure; nothing of the file system is read."""
        refs: list[SourceRef] = []
        failures: list[Failure] = []
        for raw in urls:
            item = raw.strip()
            if is_url(item):
                refs.append(SourceRef(item, item, True))
            else:
                failures.append(Failure(item or repr(raw), "only http:// and https:// URLs can be ingested here"))
        return self._run([(ref, None) for ref in refs], failures, scope, False, None)

    def ingest_bytes(self, data: bytes, *, name: str, source: str, kind: str, scope: str,
                     time_budget: float | None = None) -> IngestReport:
        """For uploads (Discord attachments): the bytes are the document; `source` is its identity.
        Reading and chunking get `time_budget` seconds (default UPLOAD_TIME_BUDGET_S), else a Failure."""
        deadline = Deadline(UPLOAD_TIME_BUDGET_S if time_budget is None else time_budget, name)
        try:
            article = extract(data, kind=kind, name=name, deadline=deadline)
        except QabotError as exc:
            return IngestReport(failures=(Failure(name, _strip_name(str(exc), name)),))
        return self._run([(SourceRef(name, source, False), article)], [], scope, False, None, deadline=deadline)

    def ingest_paragraphs(self, *, title: str, paragraphs: Sequence[str], source: str, scope: str,
                          outlet: str | None = None, published: str | None = None,
                          time_budget: float | None = None) -> IngestReport:
        """One document given as title and paragraphs (a Discord thread, a channel's pins), identified by
        ``source``. Ingesting the same source again replaces it, so edited paragraphs are updated and deleted
        ones disappear; with no paragraph left, the stored document of that source is removed ("removed")."""
        name = title or source
        deadline = Deadline(UPLOAD_TIME_BUDGET_S if time_budget is None else time_budget, name)
        kept = [p for p in paragraphs if p.strip()]
        if not kept:
            existing = self.index.store.document_by_source(scope, source)
            if existing is None:
                return IngestReport(failures=(Failure(name, "no text to index"),))
            with self.index.writer() as writer:
                writer.delete_document(existing.id)
            return IngestReport(outcomes=(DocOutcome(name, existing.doc_key, existing.title, "removed", 0),))
        try:
            article = article_from_paragraphs(title, kept, name=name, outlet=outlet, published=published,
                                              deadline=deadline)
        except QabotError as exc:
            return IngestReport(failures=(Failure(name, _strip_name(str(exc), name)),))
        return self._run([(SourceRef(name, source, False), article)], [], scope, False, None, deadline=deadline)

    def ingest_texts(self, items: Iterable[tuple[str, str, bytes]], *, kind: str = "markdown",
                     scope: str = BASE_SCOPE, progress: bool | None = None) -> IngestReport:
        """Documents given as (source, name, raw bytes), e.g. an archive read by a script or the benchmark:
        the same cleaning, chunking and batching as files, without a file per document."""

        def loader(name: str, data: bytes) -> Callable[[], ExtractedArticle]:
            return lambda: extract(data, kind=kind, name=name)

        work = [(SourceRef(name, source, False), loader(name, data)) for source, name, data in items]
        return self._run(work, [], scope, progress, None)

    def _texts_of(self, scope: str) -> dict[str, str]:
        """content hash -> source of the earliest document of this scope with that title and text."""
        first: dict[str, str] = {}
        for d in sorted(self.index.store.documents(scope), key=lambda d: d.id):
            first.setdefault(d.content_hash, d.source)
        return first

    def _run(self, items: Sequence[tuple[SourceRef, ExtractedArticle | Callable[[], ExtractedArticle] | None]], failures: list[Failure], scope: str,
             progress: bool | None, on_commit: Callable[[Sequence[DocOutcome]], None] | None,
             deadline: Deadline | None = None) -> IngestReport:
        from tqdm import tqdm

        started = time.perf_counter()
        outcomes: list[DocOutcome] = []
        embedded = reused = 0
        batch: list[_Pending] = []
        batch_size = 0
        bar = tqdm(total=0, unit="passage", desc="Embedding", file=sys.stderr, dynamic_ncols=True,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress, leave=False)
        # One batch is embedded (on the encoder's threads) while the next is read and chunked here: chunking
        # is single-threaded Python, so the encoder would otherwise leave a core idle for a quarter of the
        # ingest. Commits stay in order on this thread; at most one batch is in flight.
        embedder = ThreadPoolExecutor(1, thread_name_prefix="qabot-embed")
        inflight: tuple[list[_Pending], int, Future[dict[str, PassageVectors]]] | None = None
        sent: set[str] = set()  # hashes sent for embedding in this run (their batch commits them first)
        # What this scope's documents say (content hash -> first source), read once a run when a document is
        # added and kept up to date with what the run commits: added copies of known text are reported.
        texts: dict[str, str] | None = None
        with self.index.writer() as writer, embedder:

            def settle() -> None:
                """Wait for the batch in flight and commit it."""
                nonlocal inflight, embedded, texts
                if inflight is None:
                    return
                pending, count, future = inflight
                inflight = None
                vectors = future.result()
                embedded += count
                bar.update(count)
                docs = [p.doc for p in pending if p.status != "unchanged"]
                if docs:
                    # This batch was checked against the store before the previous batch committed; if that
                    # one replaced the last document using an embedding this batch reuses, the embedding is
                    # gone now: embed it again (rare; we hold the writer lock, so nothing else removes more).
                    reuse = {p.embed_hash for d in docs for p in d.passages} - vectors.keys()
                    lost = reuse - self.index.store.existing_hashes(reuse)
                    if lost:
                        jobs = {h: j for p in pending for h, j in p.jobs.items() if h in lost}
                        vectors = {**vectors, **embed_passages(self.index.encoder, list(jobs.values()))}
                        embedded += len(jobs)
                    writer.put_documents(docs, vectors)
                added = [p.doc for p in pending if p.status == "added"]
                if added and texts is None:
                    texts = self._texts_of(scope)  # read after this batch's commit: it holds these too
                elif texts is not None:
                    for d in docs:
                        texts.setdefault(d.content_hash, d.source)
                twins = {d.doc_key: texts[d.content_hash] for d in added
                         if texts is not None and texts.get(d.content_hash, d.source) != d.source}
                done = [DocOutcome(p.ref.name, p.doc.doc_key, p.doc.title, p.status, len(p.doc.passages),
                                   twins.get(p.doc.doc_key, "")) for p in pending]
                outcomes.extend(done)
                if on_commit and done:
                    on_commit(done)

            def flush() -> None:
                nonlocal batch, batch_size, inflight, reused
                settle()
                # Copies of one passage are embedded once, also across batches: this batch was prepared
                # before the previous one committed, so its store check could not see those hashes.
                uniq = {j.hash: j for p in batch for j in p.missing if j.hash not in sent}
                reused += sum(len(p.missing) for p in batch) - len(uniq)  # copies: embedded once, reused after
                sent.update(uniq)
                jobs = list(uniq.values())
                future: Future[dict[str, PassageVectors]] = (
                    embedder.submit(embed_passages, self.index.encoder, jobs) if jobs else _done({}))
                inflight = (batch, len(jobs), future)
                batch, batch_size = [], 0

            for ref, article in items:
                try:
                    if article is None:
                        article = read_source(ref, allow_private_urls=self.allow_private_urls, fetch=self._fetch)
                    elif callable(article):
                        article = article()
                    pending = self.prepare(ref, article, scope, deadline)
                except QabotError as exc:
                    failures.append(Failure(ref.name, _strip_name(user_message(exc), ref.name)))
                    continue
                except OSError as exc:
                    failures.append(Failure(ref.name, f"cannot read: {exc.strerror or exc}"))
                    continue
                reused += len(pending.doc.passages) - len(pending.missing)
                bar.total += len(pending.missing)
                bar.refresh()
                batch.append(pending)
                batch_size += len(pending.missing)
                if batch_size >= COMMIT_EVERY_PASSAGES:
                    flush()
            flush()
            settle()
        bar.close()
        return IngestReport(tuple(outcomes), tuple(failures), embedded, reused, time.perf_counter() - started)

    def remove(self, doc_ref: str, *, scope: str | None = BASE_SCOPE) -> list[str]:
        """Remove one document by key or source (path/URL), or by exact title when only one document has it;
        returns the removed titles. A title that several documents share removes nothing: the error lists
        their keys and sources (one line each), so the user can pick one by key."""
        docs = self.index.store.documents(scope)
        try:
            path_form = str(Path(doc_ref).expanduser().resolve()) if not is_url(doc_ref) else doc_ref
        except (OSError, RuntimeError):  # a ~user that does not exist, a name too long: not a path, then
            path_form = doc_ref
        matches = [d for d in docs if doc_ref in (d.doc_key, d.source) or d.source == path_form]
        if not matches:
            matches = [d for d in docs if d.title == doc_ref]
            if len(matches) > 1:
                raise InputError("\n".join(
                    [f"{len(matches)} documents have the title {doc_ref!r}; remove one by its key:"]
                    + [f"  {d.doc_key}  {d.source}" for d in matches]))
        if not matches:
            raise InputError(f"No document matches {doc_ref!r}: see `qabot ls` for keys and sources")
        with self.index.writer() as writer:
            for d in matches:
                writer.delete_document(d.id)
        return [d.title for d in matches]
