"""EmbeddedIndex behaviour with the hashing encoder: idempotent ingest, replacement, removal, recovery, locking."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from filelock import FileLock

from embeddings.config import RetrievalParams
from embeddings.encoders.hashing import HashingEncoder
from embeddings.errors import IndexBusy, IndexMismatch
from embeddings.models import guild_scope
from embeddings.service import QAService
from embeddings.settings import Settings
from embeddings.store.embedded import index as index_mod
from embeddings.store.embedded.index import EmbeddedIndex
from tests.support import ARTICLE, SEEDS, make_service, write


def test_changed_document_replaces_its_passages_and_reuses_unchanged_embeddings(hashing_service, tmp_path):
    # Paragraphs long enough to be passages of their own, so one edit leaves the others unchanged.
    paras = [" ".join(f"{topic} sentence {i} about the harbour ferry plan." for i in range(12))
             for topic in ("Council", "Commuter", "Biologist")]
    f = write(tmp_path / "ferry.txt", "Harbour Ferry Plan\n\n" + "\n\n".join(paras) + "\n")
    first = hashing_service.ingest([str(f)], progress=False)
    assert first.outcomes[0].passages == 3
    before = hashing_service.stats()
    write(f, f.read_text() + "\nThe first crossing sold out within an hour of tickets going on sale online.\n")
    report = hashing_service.ingest([str(f)], progress=False)
    assert report.count("updated") == 1
    assert report.reused >= 1, "unchanged passages must not be embedded again"
    after = hashing_service.stats()
    assert after.documents == before.documents == 1
    texts = [p.text for p in hashing_service.ask("When did the first crossing sell out?").passages]
    assert any("sold out" in t for t in texts)
    assert hashing_service.index.integrity().ok


def test_rm_removes_document_entirely(hashing_service, tmp_path):
    f = write(tmp_path / "ferry.txt", ARTICLE)
    hashing_service.ingest([str(f), str(SEEDS)], progress=False)
    key = next(d.doc_key for d in hashing_service.documents() if "Ferry" in d.title)
    assert hashing_service.remove(key) == ["Harbour Council Approves New Ferry Route"]
    assert all("Ferry" not in d.title for d in hashing_service.documents())
    answer = hashing_service.ask("ferry route Northport Carrow seal colony")
    assert all("ferry" not in p.text.lower() for p in answer.passages)
    counts = hashing_service.index.store.counts()
    assert counts["embeddings"] == counts["passages"] or counts["embeddings"] <= counts["passages"]
    assert hashing_service.index.integrity().ok


def test_title_is_context_not_a_passage(hashing_service, tmp_path):
    hashing_service.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    passages = hashing_service.index.passages(hashing_service.index.store.passage_ids_and_scopes()[0].tolist())
    assert passages and all(not p.text.startswith("Harbour Council Approves") for p in passages.values())
    assert all(p.doc.title == "Harbour Council Approves New Ferry Route" for p in passages.values())


def test_passage_and_sentence_offsets_point_into_document(hashing_service, tmp_path):
    hashing_service.ingest([str(SEEDS)], progress=False)
    store = hashing_service.index.store
    rows = store.passages(store.passage_ids_and_scopes()[0].tolist())
    for row in rows.values():
        doc_text = store.document_text(row.doc_id)
        assert doc_text[row.start:row.end] == row.text
        for s, e in row.sentences:
            assert row.text[s:e].strip() == row.text[s:e] and row.text[s:e]


def test_config_is_self_describing(hashing_service):
    cfg = json.loads((hashing_service.index.home / "config.json").read_text())
    assert cfg["model"] == "hashing:256" and cfg["dimension"] == 256
    assert cfg["chunking"]["max_tokens"] > 0 and cfg["schema_version"] == 1
    assert cfg["retrieval"] == {}, "a new index follows the installed defaults"


def test_retrieval_overrides_survive_reopen(tmp_path):
    home = tmp_path / "idx"
    svc = make_service(home)
    svc.index.save_config(svc.index.config.with_retrieval(answer_threshold=0.7))
    svc.close()
    cfg = json.loads((home / "config.json").read_text())
    assert cfg["retrieval"] == {"answer_threshold": 0.7}
    again = make_service(home)
    assert again.index.config.retrieval.answer_threshold == 0.7
    assert again.index.config.retrieval.rerank_weights == RetrievalParams().rerank_weights
    again.close()


def test_second_writer_is_refused(hashing_service, tmp_path):
    f = write(tmp_path / "ferry.txt", ARTICLE)
    with FileLock(str(hashing_service.index.home / "writer.lock")):
        with pytest.raises(IndexBusy, match="Another qabot process is writing"):
            hashing_service.ingest([str(f)], progress=False)
    assert hashing_service.stats().documents == 0


@pytest.mark.parametrize("damage", ["delete_artifacts", "corrupt_dense", "delete_keyword", "stale_generation"])
def test_caches_rebuilt_from_sqlite_without_reembedding(tmp_path, damage):
    home = tmp_path / "idx"
    svc = make_service(home)
    svc.ingest([str(SEEDS), str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    svc.close()
    art = json.loads((home / "artifacts.json").read_text())
    if damage == "delete_artifacts":
        (home / "artifacts.json").unlink()
    elif damage == "corrupt_dense":
        (home / art["dense"]).write_bytes(b"garbage")
    elif damage == "delete_keyword":
        shutil.rmtree(home / art["keyword_segments"][0])
    else:
        (home / "artifacts.json").write_text(json.dumps({**art, "generation": art["generation"] - 1}))

    class CountingEncoder(HashingEncoder):
        calls = 0

        def encode(self, texts, *, batch_size=64):
            CountingEncoder.calls += len(texts)
            return super().encode(texts, batch_size=batch_size)

    index = EmbeddedIndex(home, CountingEncoder(256))
    assert index.integrity().ok
    assert CountingEncoder.calls == 0, "recovery must use stored embeddings"
    assert json.loads((home / "artifacts.json").read_text())["generation"] == index.store.generation()
    index.close()


def test_lookups_span_several_in_list_chunks(hashing_service, monkeypatch):
    import embeddings.store.embedded.sqlite as store_mod

    hashing_service.ingest([str(SEEDS)], progress=False)
    store = hashing_service.index.store
    ids = store.passage_ids_and_scopes()[0].tolist()
    whole = store.passages(ids)
    monkeypatch.setattr(store_mod, "IN_CHUNK", 2)  # the seed article's 9 passages now need 5 chunks
    assert len(ids) > 4 and store.passages(ids) == whole
    assert set(store.sentence_vectors_for(ids, 256)) == set(ids)
    assert np.count_nonzero(np.abs(store.vectors_for(ids, 256)).sum(axis=1)) == len(ids)
    assert store.existing_hashes([f"nope{i}" for i in range(5)]) == set()


def test_index_records_encoder_backend_and_refuses_mixed_writes(tmp_path):
    def with_backend(backend: str) -> HashingEncoder:
        enc = HashingEncoder(256)
        enc.backend = backend  # stands in for a runtime of the same model
        return enc

    home = tmp_path / "idx"
    svc = QAService(Settings(home=home), encoder=with_backend("onnx-int8"))
    svc.ingest([str(SEEDS)], progress=False)
    svc.close()
    assert json.loads((home / "config.json").read_text())["encoder_backend"] == "onnx-int8"

    other = QAService(Settings(home=home), encoder=with_backend("torch"))
    assert other.ask("why did Egypt cut ties with Iran?").passages  # reading with another runtime is fine
    with pytest.raises(IndexMismatch, match="onnx-int8"):
        other.ingest([str(SEEDS / "000_db06b687ad4f3416.txt")], progress=False)
    other.close()


def test_ingest_tokenizes_only_new_passages_and_readers_reuse_loaded_segments(tmp_path, monkeypatch):
    """An ingest adds a keyword segment of its own passages; the corpus already indexed is not re-read,
    and a reader catching up loads only segments it does not hold."""
    from embeddings.store.embedded import keyword

    home = tmp_path / "idx"
    svc = make_service(home)
    svc.ingest([str(SEEDS)], progress=False)
    reader = EmbeddedIndex(home, HashingEncoder(256))
    before = {s.name: s for s in reader._caches.keyword.segments}
    built: list[list[int]] = []
    real = keyword.build_segment

    def spy(ids, texts):
        built.append(list(map(int, ids)))
        return real(ids, texts)

    monkeypatch.setattr(keyword, "build_segment", spy)
    svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    new_ids = [p.passage_id for p in svc.ask("Carrow ferry route seal colony", k=3).passages]
    assert len(built) == 1 and set(new_ids) & set(built[0])
    assert built[0] == sorted(set(svc.index._caches.keyword.ids.tolist()) - {int(i) for s in before.values()
                                                                              for i in s.ids})
    assert reader.refresh()
    for seg in reader._caches.keyword.segments:
        if seg.name in before:
            assert seg is before[seg.name], "an unchanged segment was read from disk again"
    assert reader.integrity().ok and len(built) == 1
    np.testing.assert_array_equal(reader._caches.keyword.scores("Carrow ferry"),
                                  svc.index._caches.keyword.scores("Carrow ferry"))
    reader.close()
    svc.close()


def _raced_reader(tmp_path, monkeypatch, race: str):
    """A reader catching up while a second ingest lands at the worst moment (see the callers)."""
    from embeddings.store.embedded import index as index_mod
    from embeddings.store.embedded.keyword import KeywordIndex

    home = tmp_path / "idx"
    svc = make_service(home)
    svc.ingest([str(SEEDS)], progress=False)
    reader = EmbeddedIndex(home, HashingEncoder(256))
    svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    rebuilds: list[int] = []
    real_rebuild = reader._rebuild  # (the writer's ingest uses _rebuild too: only the reader's is counted)
    monkeypatch.setattr(reader, "_rebuild", lambda *a: rebuilds.append(1) or real_rebuild(*a))
    late = write(tmp_path / "late.txt", "Late Edition\n\nThe night ferry to Carrow gained a second boat.\n")
    if race == "read-between":
        # The reader takes SQLite's generation, then the writer commits and publishes before the reader
        # reads artifacts.json: the two disagree, newer artifacts than generation.
        real_gen = reader.store.generation
        calls = []

        def generation():
            g = real_gen()
            if not calls:
                calls.append(g)
                svc.ingest([str(late)], progress=False)
            return g

        monkeypatch.setattr(reader.store, "generation", generation)
        caches = reader._load_or_rebuild(reader._caches)
    else:
        # The reader read artifacts.json, then the writer published and deleted the segments it names.
        real_load = KeywordIndex.load
        done = []

        def load(home_, names, reuse=None):
            if not done:
                done.append(1)
                svc.ingest([str(late)], progress=False)
            return real_load(home_, names, reuse)

        monkeypatch.setattr(index_mod.KeywordIndex, "load", staticmethod(load))
        caches = reader._load_or_rebuild(reader._caches)
    assert not rebuilds, "a race with a writer must not cost a rebuild"
    assert caches.generation == svc.index.store.generation()
    np.testing.assert_array_equal(caches.keyword.ids, svc.index._caches.keyword.ids)
    np.testing.assert_array_equal(caches.dense.ids(), svc.index._caches.dense.ids())
    reader.close()
    svc.close()


@pytest.mark.parametrize("race", ["read-between", "files-deleted"])
def test_reader_racing_a_writer_reads_again_instead_of_rebuilding(tmp_path, monkeypatch, race):
    _raced_reader(tmp_path, monkeypatch, race)


def test_repair_after_a_writer_died_unpublished_tokenizes_only_what_the_reader_lacks(tmp_path, monkeypatch):
    """A writer killed between its SQLite commit and publishing leaves artifacts.json behind: a reader
    repairs from the keyword segments it holds instead of re-tokenizing the corpus."""
    from embeddings.store.embedded import keyword

    home = tmp_path / "idx"
    svc = make_service(home)
    svc.ingest([str(SEEDS)], progress=False)
    reader = EmbeddedIndex(home, HashingEncoder(256))
    held = set(reader._caches.keyword.ids.tolist())
    published = (home / EmbeddedIndex.ARTIFACTS).read_text()
    svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    (home / EmbeddedIndex.ARTIFACTS).write_text(published)  # as if the writer died before publishing
    built: list[list[int]] = []
    real = keyword.build_segment
    monkeypatch.setattr(keyword, "build_segment", lambda ids, texts: built.append(list(map(int, ids))) or real(ids, texts))
    assert reader.refresh()
    assert built == [sorted(set(reader._caches.keyword.ids.tolist()) - held)] and built[0]
    assert reader.integrity().ok
    np.testing.assert_array_equal(reader._caches.keyword.scores("Carrow ferry"),
                                  svc.index._caches.keyword.scores("Carrow ferry"))
    reader.close()
    svc.close()


def test_opening_while_another_process_ingests_serves_the_published_state(tmp_path, monkeypatch):
    """SQLite is ahead of artifacts.json while a writer is mid-ingest. A reader opened then serves the last
    published caches (its guild filter treating passages SQLite no longer has as no one's) instead of
    rebuilding what the writer is about to publish, and catches up once the writer has published."""
    home = tmp_path / "idx"
    svc = make_service(home)
    svc.ingest([str(SEEDS)], progress=False)
    guild = guild_scope(7)
    ferry = write(tmp_path / "ferry.txt", ARTICLE)
    svc.ingest([str(ferry)], scope=guild, progress=False)
    published = set(svc.index._caches.keyword.ids.tolist())
    write(ferry, ARTICLE + "\nA second boat joins the Carrow route in June, the council said.\n")
    rebuilds: list[int] = []
    real_rebuild = EmbeddedIndex._rebuild
    opened: list[EmbeddedIndex] = []

    def rebuild(self, *args):
        if self is not svc.index:  # the writer's own catch-up is not the reader's rebuild
            rebuilds.append(1)
        return real_rebuild(self, *args)

    monkeypatch.setattr(EmbeddedIndex, "_rebuild", rebuild)

    def open_reader(_done):
        if not opened:
            opened.append(EmbeddedIndex(home, HashingEncoder(256)))

    report = svc.ingest([str(ferry)], scope=guild, progress=False, on_commit=open_reader)
    assert report.count("updated") == 1
    reader = opened[0]
    assert not rebuilds
    caches = reader._caches
    assert set(caches.keyword.ids.tolist()) == published and caches.generation < reader.store.generation()
    gone = {i for i, sc in zip(caches.keyword.ids.tolist(), caches.scopes, strict=True) if sc == index_mod.GONE_SCOPE}
    assert gone and gone == published - set(reader.store.passage_ids_and_scopes()[0].tolist())
    ids, _ = reader.keyword_search("Carrow ferry seal colony", 5, scope=guild)
    assert not set(ids.tolist()) & gone  # the replaced version is no one's
    assert reader.refresh() and reader.integrity().ok and not rebuilds
    ids, _ = reader.keyword_search("second boat Carrow June", 5, scope=guild)
    assert len(ids) and not set(ids.tolist()) & published
    reader.close()
    svc.close()


def test_index_with_a_pre_segment_keyword_folder_is_rebuilt_once(tmp_path):
    """Indexes written before keyword segments name one bm25s folder in artifacts.json: it is rebuilt from
    SQLite on open (no re-embedding) and the new layout is persisted."""
    home = tmp_path / "idx"
    svc = make_service(home)
    svc.ingest([str(SEEDS)], progress=False)
    want = [(p.passage_id, round(p.score, 5)) for p in svc.ask("Why did Egypt cut ties with Iran?").passages]
    svc.close()
    art = json.loads((home / "artifacts.json").read_text())
    for name in art.pop("keyword_segments"):
        shutil.rmtree(home / name)
    (home / "keyword-7").mkdir()
    (home / "artifacts.json").write_text(json.dumps({**art, "keyword": "keyword-7"}))
    svc = make_service(home)
    assert svc.index.integrity().ok
    assert [(p.passage_id, round(p.score, 5)) for p in svc.ask("Why did Egypt cut ties with Iran?").passages] == want
    art = json.loads((home / "artifacts.json").read_text())
    assert art["keyword_segments"] and not (home / "keyword-7").exists()
    svc.close()
