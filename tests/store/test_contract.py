"""One contract, two stores: every test here runs against the embedded index and against PostgreSQL.

What the Retriever, Answerer, Ingestor and QAService rely on: add, replace, delete, guild visibility of
dense and keyword search, passages round trip, integrity, stats, config, feedback. The hashing encoder
stands in for the model."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.config import RetrievalParams
from embeddings.encoders.hashing import HashingEncoder
from embeddings.errors import IndexMismatch
from embeddings.models import guild_scope
from embeddings.service import QAService
from embeddings.settings import Settings
from tests.support import ARTICLE, SEEDS, write


@pytest.fixture(params=["embedded", "postgresql"])
def settings(request, tmp_path) -> Settings:
    if request.param == "embedded":
        return Settings(home=tmp_path / "idx")
    return Settings(home=tmp_path / "unused", store=request.getfixturevalue("pg_url"))


@pytest.fixture
def svc(settings):
    service = QAService(settings, encoder=HashingEncoder(256))
    yield service
    service.close()


def test_index_satisfies_the_backend_protocol(svc, settings):
    from embeddings.store.base import IndexBackend, StoreReader

    assert isinstance(svc.index, IndexBackend)
    kind = "postgresql" if settings.store else "embedded"
    assert svc.index.capabilities.kind == kind
    assert svc.index.describe().startswith(kind)
    # Every member the written interface declares is there, on the index and on its row reader.
    for proto, obj in ((IndexBackend, svc.index), (StoreReader, svc.index.store)):
        declared = {n for n in vars(proto) if not n.startswith("_")} | set(proto.__annotations__)
        missing = sorted(n for n in declared if not hasattr(obj, n))
        assert not missing, f"{type(obj).__name__} lacks {missing}"
    with svc.index.bulk_load():
        pass
    with svc.index.feedback() as votes:
        assert votes.salt and votes.rows() == []


def test_reingest_is_noop_and_embeds_nothing(svc, tmp_path):
    f = write(tmp_path / "ferry.txt", ARTICLE)
    first = svc.ingest([str(f)], progress=False)
    assert first.count("added") == 1 and first.embedded >= 1
    gen = svc.index.store.generation()
    again = svc.ingest([str(f)], progress=False)
    assert again.count("unchanged") == 1 and again.embedded == 0
    assert svc.index.store.generation() == gen


def test_replace_keeps_one_document_and_reuses_embeddings(svc, tmp_path):
    paras = [" ".join(f"{topic} sentence {i} about the harbour ferry plan." for i in range(12))
             for topic in ("Council", "Commuter", "Biologist")]
    f = write(tmp_path / "ferry.txt", "Harbour Ferry Plan\n\n" + "\n\n".join(paras) + "\n")
    assert svc.ingest([str(f)], progress=False).outcomes[0].passages == 3
    write(f, f.read_text() + "\nThe first crossing sold out within an hour of tickets going on sale online.\n")
    report = svc.ingest([str(f)], progress=False)
    assert report.count("updated") == 1 and report.reused >= 1
    assert svc.stats().documents == 1
    counts = svc.index.store.counts()
    assert counts["embeddings"] == len(set(svc.index.store.passage_ids_and_scopes()[0].tolist())) == counts["passages"]
    assert any("sold out" in p.text for p in svc.ask("When did the first crossing sell out?").passages)
    assert svc.index.integrity().ok


def test_delete_removes_document_passages_and_orphan_embeddings(svc, tmp_path):
    svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE)), str(SEEDS)], progress=False)
    key = next(d.doc_key for d in svc.documents() if "Ferry" in d.title)
    assert svc.remove(key) == ["Harbour Council Approves New Ferry Route"]
    assert all("Ferry" not in d.title for d in svc.documents())
    answer = svc.ask("ferry route Northport Carrow seal colony")
    assert all("ferry" not in p.text.lower() for p in answer.passages)
    counts = svc.index.store.counts()
    assert counts["embeddings"] <= counts["passages"] and counts["documents"] == 1
    assert svc.index.integrity().ok


def test_passages_round_trip_offsets_and_sentences(svc):
    svc.ingest([str(SEEDS)], progress=False)
    store = svc.index.store
    ids = store.passage_ids_and_scopes()[0].tolist()
    rows = svc.index.passages(ids)
    assert sorted(rows) == sorted(ids) and rows
    for row in rows.values():
        assert store.document_text(row.doc_id)[row.start:row.end] == row.text
        assert row.sentences and all(row.text[s:e].strip() == row.text[s:e] and row.text[s:e] for s, e in row.sentences)
        assert not row.text.startswith(row.doc.title) and row.doc.scope == ""
    sv = store.sentence_vectors_for(ids, 256)
    assert set(sv) == set(ids) and all(sv[i].shape == (len(rows[i].sentences), 256) for i in ids)
    vecs = svc.index.vectors(ids)
    assert vecs.shape == (len(ids), 256) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vecs, store.vectors_for(ids, 256))


def test_dense_and_keyword_search_respect_guild_scope(svc, tmp_path):
    idx = svc.index
    a = write(tmp_path / "a.txt", ARTICLE)
    b = write(tmp_path / "b.txt", ARTICLE.replace("Northport", "Southport").replace("ferry", "tram"))
    svc.ingest([str(a)], scope=guild_scope(1), progress=False)
    svc.ingest([str(b)], scope=guild_scope(2), progress=False)
    svc.ingest([str(SEEDS)], progress=False)
    ids, scopes = idx.store.passage_ids_and_scopes()
    owner = dict(zip(ids.tolist(), scopes, strict=True))
    qvec = svc.encoder.encode(["route between Northport Southport Carrow tram ferry"])[0]
    for scope in ("", guild_scope(1), guild_scope(2), guild_scope(3)):
        allowed = {"", scope}
        d_ids, d_scores = idx.dense_search(qvec, 100, scope)
        assert {owner[i] for i in d_ids.tolist()} <= allowed
        assert len(d_ids) == sum(1 for s in scopes if s in allowed), "a small store returns every visible row"
        assert np.all(np.diff(d_scores) <= 1e-6), "best first"
        k_ids, k_scores = idx.keyword_search("Northport Southport Carrow tram ferry", 100, scope)
        assert {owner[i] for i in k_ids.tolist()} <= allowed and np.all(np.diff(k_ids) > 0)
        assert np.all(k_scores > 0)
        if scope in (guild_scope(1), guild_scope(2)):
            assert {owner[i] for i in k_ids.tolist()} == {scope}
    for guild, mine, other in ((1, "Northport", "Southport"), (2, "Southport", "Northport")):
        ans = svc.ask(f"route between {mine} {other} Carrow", k=20, scope=guild_scope(guild))
        texts = " ".join(p.text for p in ans.passages)
        assert mine in texts and other not in texts
    base = svc.ask("route between Northport Southport", k=20)
    assert all("Northport" not in p.text and "Southport" not in p.text for p in base.passages)


def test_keyword_search_contract(svc, tmp_path):
    svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE)), str(SEEDS)], progress=False)
    idx = svc.index
    all_ids = idx.store.passage_ids_and_scopes()[0]
    ids, scores = idx.keyword_search("ferry seal colony", 1)
    assert len(ids) == 1 and scores[0] > 0
    top = int(ids[0])
    assert "seal" in idx.passages([top])[top].text
    also = np.array([int(all_ids[-1]), 10**9, top], dtype=np.int64)
    ids2, scores2 = idx.keyword_search("ferry seal colony", 0, also=also)
    assert ids2.tolist() == sorted(set(also.tolist()))
    got = dict(zip(ids2.tolist(), scores2.tolist(), strict=True))
    assert got[10**9] == 0.0 and got[top] == pytest.approx(float(scores[0]))
    nothing, none_scores = idx.keyword_search("zzzqqq", 5)
    assert len(nothing) == 0 and len(none_scores) == 0


def test_reader_sees_another_writers_commit_without_restart(settings, tmp_path):
    reader = QAService(settings, encoder=HashingEncoder(256))
    writer = QAService(settings, encoder=HashingEncoder(256))
    try:
        assert not reader.ask("ferry route Northport").passages
        writer.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
        answer = reader.ask("ferry route Northport")
        assert answer.passages and "ferry" in answer.passages[0].text.lower()
    finally:
        reader.close()
        writer.close()


def test_model_mismatch_is_refused(settings):
    QAService(settings, encoder=HashingEncoder(64)).close()
    with pytest.raises(IndexMismatch, match="hashing:64"):
        QAService(settings, encoder=HashingEncoder(128))


def test_writes_with_another_encoder_backend_are_refused_naming_the_stores_setting(settings):
    def with_backend(backend: str) -> HashingEncoder:
        enc = HashingEncoder(64)
        enc.backend = backend  # stands in for another runtime of the same model
        return enc

    svc = QAService(settings, encoder=with_backend("onnx-int8"))
    svc.ingest([str(SEEDS)], progress=False)
    svc.close()
    other = QAService(settings, encoder=with_backend("torch"))
    try:
        assert other.ask("why did Egypt cut ties with Iran?").passages  # reading is allowed
        setting = "QABOT_STORE" if settings.store else "QABOT_HOME"
        with pytest.raises(IndexMismatch, match=f"onnx-int8.*another {setting}"):
            other.ingest([str(SEEDS / "000_db06b687ad4f3416.txt")], progress=False)
    finally:
        other.close()


def test_config_is_stored_and_overrides_survive_reopen(settings):
    svc = QAService(settings, encoder=HashingEncoder(256))
    cfg = svc.index.config
    assert cfg.model == "hashing:256" and cfg.dimension == 256 and cfg.chunking.max_tokens > 0
    svc.index.save_config(cfg.with_retrieval(answer_threshold=0.7))
    svc.close()
    again = QAService(settings, encoder=HashingEncoder(256))
    assert again.index.config.retrieval.answer_threshold == 0.7
    assert again.index.config.retrieval.rerank_weights == RetrievalParams().rerank_weights
    again.close()


def test_stats_and_integrity(svc):
    svc.ingest([str(SEEDS)], progress=False)
    st = svc.stats()
    counts = svc.index.store.counts()
    assert (st.documents, st.passages, st.sentences) == (counts["documents"], counts["passages"], counts["sentences"])
    assert st.documents == 1 and st.passages > 1 and st.sentences >= st.passages
    assert st.model == "hashing:256" and st.dimension == 256 and st.index_bytes > 0
    report = svc.index.integrity()
    assert report.ok and report.sqlite_passages == st.passages


def test_feedback_round_trip(svc):
    svc.ingest([str(SEEDS)], progress=False)
    answer = svc.ask("why did Egypt cut ties with Iran?")
    assert svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=1) is False
    assert svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=-1) is True
    assert svc.record_feedback(answer_key="m1", user_id=43, answer=answer, vote=1) is False
    rows = svc.export_feedback(include_unlabelled=True)
    assert len(rows) == 1 and rows[0]["votes"] == {"up": 1, "down": 1}


def test_feedback_corrections_are_kept_with_the_vote(svc, tmp_path):
    """What a reader wrote in the 👎 form lives in the vote's correction column: a 👎 without a form keeps it,
    a new form replaces it, a 👍 clears it; the export writes them, and `qabot migrate` copies them."""
    from embeddings.service import Correction
    from embeddings.store.migrate import copy_index

    svc.ingest([str(SEEDS)], progress=False)
    answer = svc.ask("why did Egypt cut ties with Iran?")

    def mine() -> Correction:
        with svc.index.feedback() as store:
            (row,) = [r for r in store.rows() if r.user_hash == store.user_hash(42)]
            return row.correction

    fix = Correction(wrong="It cites the wrong year", right="  Because of the 1979 revolution  ")
    assert svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=-1, correction=fix) is False
    assert mine() == Correction("It cites the wrong year", "Because of the 1979 revolution")  # trimmed
    assert svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=-1) is True
    assert mine() == Correction("It cites the wrong year", "Because of the 1979 revolution")  # kept
    assert svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=1) is True
    assert not mine()  # the reader now says the answer was right
    svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=-1, correction=Correction(right="x" * 5000))
    assert mine() == Correction("", "x" * 1000)
    svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=-1, correction=Correction("", "Sadat"))
    svc.record_feedback(answer_key="m1", user_id=43, answer=answer, vote=-1,
                        correction=Correction("Wrong country", ""))
    svc.record_feedback(answer_key="m1", user_id=44, answer=answer, vote=-1)
    assert svc.export_feedback() == []  # thumbs down: still no label of its own
    (row,) = svc.export_feedback(include_unlabelled=True)
    assert row["needs_review"] and row["votes"] == {"up": 0, "down": 3}
    assert sorted(row["corrections"], key=lambda c: c["right"]) == [{"wrong": "Wrong country", "right": ""},
                                                                    {"wrong": "", "right": "Sadat"}]
    # A thumbs-up majority is labelled as before and still carries the minority's correction.
    for user in (45, 46, 47, 48):
        svc.record_feedback(answer_key="m1", user_id=user, answer=answer, vote=1)
    (row,) = svc.export_feedback()
    assert row["answerable"] is answer.found and row["votes"] == {"up": 4, "down": 3}
    assert len(row["corrections"]) == 2
    # `qabot migrate` into a directory copies the corrections with the votes.
    report = copy_index(svc.index, str(tmp_path / "copy"), progress=False)
    assert report.feedback == 7
    copy = QAService(Settings(home=tmp_path / "copy"), encoder=HashingEncoder(256))
    try:
        assert copy.export_feedback() == svc.export_feedback()
    finally:
        copy.close()


def test_votes_from_before_corrections_are_migrated_in_place(settings):
    """A store written before the correction column (an old qabot.sqlite3; a PostgreSQL store at schema 3)
    gets the column when opened, and keeps its votes."""
    from embeddings.service import Correction

    svc = QAService(settings, encoder=HashingEncoder(256))
    svc.ingest([str(SEEDS)], progress=False)
    answer = svc.ask("why did Egypt cut ties with Iran?")
    svc.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=-1)
    svc.record_feedback(answer_key="m2", user_id=42, answer=answer, vote=1)
    before = svc.export_feedback(include_unlabelled=True)
    location = svc.index.location
    svc.close()
    if settings.store:  # back to schema 3
        import psycopg

        with psycopg.connect(settings.store) as conn:
            conn.execute("ALTER TABLE feedback DROP COLUMN correction")
            conn.execute("DROP INDEX bot_answers_created")  # (schema 5)
            conn.execute("DELETE FROM qabot_schema_migrations WHERE version >= 4")
    else:
        import sqlite3

        with sqlite3.connect(f"{location}/qabot.sqlite3") as conn:
            conn.execute("ALTER TABLE feedback DROP COLUMN correction")
    again = QAService(settings, encoder=HashingEncoder(256))
    try:
        assert again.export_feedback(include_unlabelled=True) == before
        again.record_feedback(answer_key="m1", user_id=42, answer=answer, vote=-1, correction=Correction("old", ""))
        (row,) = again.export_feedback(include_unlabelled=True)
        assert row["corrections"] == [{"wrong": "old", "right": ""}] and row["votes"] == {"up": 1, "down": 1}
    finally:
        again.close()


def test_documents_listing_by_scope(svc, tmp_path):
    svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], scope=guild_scope(7), progress=False)
    svc.ingest([str(SEEDS)], progress=False)
    assert [d.scope for d in svc.documents()] == [guild_scope(7), ""]
    assert [d.title for d in svc.documents(guild_scope(7))] == ["Harbour Council Approves New Ferry Route"]
    assert svc.documents(guild_scope(7))[0].passages >= 1
    assert svc.index.store.document_by_source(guild_scope(7), str((tmp_path / "ferry.txt").resolve())) is not None


def test_bot_state_outlives_the_service_and_is_shared(settings):
    """Answer records and server settings survive a restart (a new QAService on the same store) and are
    seen by a second process at once (two services open together)."""
    import json

    from embeddings.models import Answer
    from embeddings.service import AnswerRecord

    first = QAService(settings, encoder=HashingEncoder(256))
    second = QAService(settings, encoder=HashingEncoder(256))
    try:
        first.ingest([str(SEEDS)], progress=False)
        answer = first.ask("why did Egypt cut ties with Iran?")
        big = 1_234_567_890_123_456_789  # snowflakes need 64 bits
        for i, q in enumerate(("first question", "second question", "third question")):
            first.bot_state().save_answer(AnswerRecord(
                message_id=big + i, channel_id=big - 1, guild_id=None if i == 2 else 7, conversation="thread:9",
                asker_id=42, scope="guild:7", question=q, answer=f"answer {i}",
                answer_json=json.dumps(answer.to_json())))
        first.bot_state().save_answer(AnswerRecord(big + 10, 5, 7, "reply:1", 42, "", "other", "", "{}"))
        first.bot_state().update_guild_settings(7, lambda _: {"mode": {"5": "all"}, "threads": False})
        # Seen by another open service (another bot process) without reopening.
        rec = second.bot_state().answer(big + 1)
        assert rec is not None and (rec.question, rec.guild_id, rec.asker_id) == ("second question", 7, 42)
        assert rec.created_at
        assert Answer.from_json(json.loads(rec.answer_json)).passages == tuple(
            Answer.from_json(answer.to_json()).passages)
        assert [r.question for r in second.bot_state().conversation("thread:9", limit=2)] == [
            "second question", "third question"]
        assert second.bot_state().conversation("thread:9", limit=2)[1].guild_id is None
        assert second.bot_state().guild_settings(7) == {"mode": {"5": "all"}, "threads": False}
        assert second.bot_state().guild_settings(8) == {} and second.bot_state().answer(1) is None
    finally:
        first.close()
        second.close()
    again = QAService(settings, encoder=HashingEncoder(256))
    try:  # a restart: everything is still there; saving again replaces
        state = again.bot_state()
        assert [r.question for r in state.conversation("thread:9")] == [
            "first question", "second question", "third question"]
        state.save_answer(AnswerRecord(big, 1, 7, "thread:9", 42, "", "edited", "", "{}"))
        assert state.answer(big).question == "edited" and len(state.conversation("thread:9")) == 3
        state.update_guild_settings(7, lambda _: {})
        assert state.guild_settings(7) == {}
    finally:
        again.close()


def test_answer_records_are_forgotten_by_age(svc):
    """forget_answers(before) deletes the records saved before that moment and nothing else; a record saved
    without a date gets the moment it was saved."""
    from datetime import UTC, datetime, timedelta, timezone

    from embeddings.service import AnswerRecord

    state = svc.bot_state()
    now = datetime.now(UTC)
    ages = {1: 400, 2: 181, 3: 179, 4: 0}  # days
    for mid, days in ages.items():
        state.save_answer(AnswerRecord(mid, 5, 7, "thread:9", 42, "", f"q{mid}", "", "{}",
                                       created_at=(now - timedelta(days=days)).isoformat(timespec="seconds")))
    state.save_answer(AnswerRecord(5, 5, 7, "thread:9", 42, "", "q5", "", "{}"))  # now, set by the store
    in_tokyo = (now - timedelta(days=170)).astimezone(timezone(timedelta(hours=9))).isoformat(timespec="seconds")
    state.save_answer(AnswerRecord(6, 5, 7, "thread:8", 42, "", "q6", "", "{}", created_at=in_tokyo))
    assert state.answer(6).created_at == (now - timedelta(days=170)).isoformat(timespec="seconds")  # kept in UTC
    # The cut-off in another time zone is the same moment.
    cutoff = (now - timedelta(days=180)).astimezone(timezone(timedelta(hours=-5)))
    assert state.forget_answers(cutoff) == 2
    assert [r.question for r in state.conversation("thread:9", limit=10)] == ["q3", "q4", "q5"]
    assert state.answer(1) is None and state.answer(3) is not None
    assert state.forget_answers(cutoff) == 0
    assert state.forget_answers(now + timedelta(seconds=2)) == 4 and state.conversation("thread:9") == []


def test_guild_settings_updates_from_two_processes_both_land(settings):
    """Two bot processes changing one server's settings at the same moment: the second waits for the first
    and reads its result, so neither change is lost; a change that raises writes nothing."""
    import threading
    import time

    first = QAService(settings, encoder=HashingEncoder(256))
    second = QAService(settings, encoder=HashingEncoder(256))
    try:
        first.bot_state().update_guild_settings(7, lambda _: {"threads": True})
        started = threading.Event()
        seen_by_second: list[dict] = []

        def second_change(values: dict) -> dict:
            seen_by_second.append(dict(values))
            return {**values, "ratelimit": 3}

        other = threading.Thread(target=lambda: second.bot_state().update_guild_settings(7, second_change))

        def first_change(values: dict) -> dict:
            other.start()
            started.set()
            time.sleep(0.5)  # the other process tries to update meanwhile
            return {**values, "mode": {"5": "all"}}

        assert first.bot_state().update_guild_settings(7, first_change) == {"threads": True, "mode": {"5": "all"}}
        other.join(30)
        assert started.is_set() and not other.is_alive()
        assert seen_by_second == [{"threads": True, "mode": {"5": "all"}}], "the second read before the first wrote"
        assert second.bot_state().guild_settings(7) == {"threads": True, "mode": {"5": "all"}, "ratelimit": 3}

        def refuse(values: dict) -> dict:
            raise ValueError("not allowed")

        with pytest.raises(ValueError):
            first.bot_state().update_guild_settings(7, refuse)
        with pytest.raises(ValueError):
            first.bot_state().update_guild_settings(8, refuse)  # no row yet: none is left behind
        assert first.bot_state().guild_settings(7)["ratelimit"] == 3
        assert first.bot_state().guild_settings(8) == {}
        assert first.bot_state().update_guild_settings(8, lambda v: {**v, "threads": False}) == {"threads": False}
    finally:
        first.close()
        second.close()
