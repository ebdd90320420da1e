"""PostgreSQL + pgvector store vs the embedded default at scale (a benchmark, not a test).

Rows are synthetic but real-ish: the SQuAD v1 dev passages (../shared/eval/squad_v1_dev, 2,067 passages) are
encoded once with all-MiniLM-L6-v2 (384 dimensions); row i is a perturbed copy of passage i % 2067
(normalise(v + noise), cosine ~0.9 to its original), so neighbourhoods are dense clusters of near-duplicates,
a hard case for HNSW. Its text is the passage's text plus a copy tag. Queries are encoded SQuAD questions.
`--random` uses random unit vectors instead (no model needed).

Scopes: 90% of rows are the base corpus, the rest belong to `--guilds` guilds equally. Each query runs
unfiltered (base corpus) and guild-filtered (base + one guild's own rows).

Measured per size and store: ingest rows/s, dense / keyword / fused-retrieval latency p50/p95, recall@10 of
dense search against exact search over the same visible rows, and how often keyword search finds the
question's SQuAD gold passage (any copy) in its top 10. For PostgreSQL also: incremental ingest with the
HNSW index live, keyword search with its candidate budget against the exhaustive query (every row matching
any question lexeme ranked: what qabot did before) on the same rows, and the naive design (one HNSW index
over every row, guild filter applied to its output) for comparison. The load average is recorded.

    .venv/bin/python bench/pg_bench.py --sizes 100000            # starts a private server (pgserver)
    .venv/bin/python bench/pg_bench.py --pg-url postgresql://... --sizes 100000 1000000"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embeddings.answering.retrieval import Retriever  # noqa: E402
from embeddings.config import RetrievalParams
from embeddings.store.migrate import StoredModel  # noqa: E402
from embeddings.store.records import NewDocument, NewPassage, PassageVectors

SQUAD = ROOT.parent / "shared" / "eval" / "squad_v1_dev"
CACHE = Path(tempfile.gettempdir()) / "qabot-pg-bench"
PER_DOC = 100


def load_base(random: bool, dim: int, n_questions: int
              ) -> tuple[np.ndarray, list[str], np.ndarray, list[str], list[set[int]]]:
    """(passage vectors, passage texts, question vectors, question texts, each question's gold passages as
    indices into the texts)."""
    passages = [json.loads(line) for line in gzip.open(SQUAD / "passages.jsonl.gz", "rt")]
    questions = [json.loads(line) for line in gzip.open(SQUAD / "questions.jsonl.gz", "rt")]
    rng = np.random.default_rng(1)
    chosen = [questions[i] for i in rng.choice(len(questions), n_questions, replace=False)]
    qsel = [q["question"] for q in chosen]
    position = {p["id"]: i for i, p in enumerate(passages)}
    gold = [{position[g] for g in q["gold_passage_ids"] if g in position} for q in chosen]
    texts = [p["text"] for p in passages]
    if random:
        pv = rng.standard_normal((len(texts), dim)).astype(np.float32)
        qv = rng.standard_normal((len(qsel), dim)).astype(np.float32)
        return (pv / np.linalg.norm(pv, axis=1, keepdims=True), texts,
                qv / np.linalg.norm(qv, axis=1, keepdims=True), qsel, gold)
    CACHE.mkdir(exist_ok=True)
    cache = CACHE / f"squad-minilm-{n_questions}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["p"], texts, data["q"], qsel, gold
    from embeddings.encoders.factory import load_encoder

    enc = load_encoder("all-MiniLM-L6-v2")
    t = time.perf_counter()
    pv, qv = enc.encode(texts), enc.encode(qsel)
    print(f"encoded {len(texts)} passages + {len(qsel)} questions in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    np.savez(cache, p=pv, q=qv)
    return pv, texts, qv, qsel, gold


def make_rows(n: int, base: np.ndarray, guilds: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, scope index per row: -1 base corpus, g >= 0 guild g)."""
    rng = np.random.default_rng(seed)
    src = np.arange(n) % len(base)
    noise = rng.standard_normal((n, base.shape[1])).astype(np.float32)
    noise *= 0.45 / np.sqrt(base.shape[1])  # cosine to the original ~0.9
    v = base[src] + noise
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scopes = np.full(n, -1, dtype=np.int32)
    n_guild = n // 10
    scopes[rng.choice(n, n_guild, replace=False)] = np.arange(n_guild) % guilds
    return v.astype(np.float32), scopes


def scope_name(g: int) -> str:
    return "" if g < 0 else f"guild:{g}"


def batches(vectors: np.ndarray, scopes: np.ndarray, texts: list[str], rows: np.ndarray, batch_docs: int = 20):
    """Documents of PER_DOC passages (rows of one scope each), `batch_docs` documents per transaction."""
    order = rows[np.argsort(scopes[rows], kind="stable")]
    docs: list[NewDocument] = []
    vecs: dict[str, PassageVectors] = {}
    for start in range(0, len(order), PER_DOC):
        chunk = order[start:start + PER_DOC]
        groups: dict[int, list[int]] = {}
        for r in chunk.tolist():
            groups.setdefault(int(scopes[r]), []).append(r)
        for g, members in groups.items():
            passages, pos, body = [], 0, []
            for j, r in enumerate(members):
                text = f"{texts[r % len(texts)]} copy{r}"
                h = f"r{r}"
                vecs[h] = PassageVectors(vectors[r], vectors[r][None, :])
                passages.append(NewPassage(j, j, pos, pos + len(text), text, h, ((pos, pos + len(text)),)))
                body.append(text)
                pos += len(text) + 2
            key = f"d{members[0]}"
            docs.append(NewDocument(key, scope_name(g), f"bench://{key}", f"Bench document {key}", None, None,
                                    "2026-01-01", key, "\n\n".join(body), tuple(passages)))
            if len(docs) >= batch_docs:
                yield docs, vecs
                docs, vecs = [], {}
    if docs:
        yield docs, vecs


def load(index, vectors, scopes, texts, rows, label: str = "") -> float:
    t = time.perf_counter()
    done, shown = 0, t
    with index.writer() as w:
        for docs, vecs in batches(vectors, scopes, texts, rows):
            w.put_documents(docs, vecs)
            done += sum(len(d.passages) for d in docs)
            if time.perf_counter() - shown > 60:  # progress of long loads (1M rows: tens of minutes)
                shown = time.perf_counter()
                rate = done / (shown - t)
                print(f"{time.strftime('%H:%M:%S')} {label} {done}/{len(rows)} rows, {rate:.0f} rows/s, "
                      f"~{(len(rows) - done) / rate / 60:.0f} min left, load {os.getloadavg()[0]:.1f}",
                      file=sys.stderr, flush=True)
    return time.perf_counter() - t


def pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2)}


def measure_queries(index, qv: np.ndarray, qtexts: list[str], guild_of_query: np.ndarray,
                    ids: np.ndarray, id_scopes: np.ndarray, all_vecs: np.ndarray) -> dict:
    retriever = Retriever(index, RetrievalParams())
    out: dict = {}
    for label, filtered in (("unfiltered", False), ("guild", True)):
        dense_t, kw_t, fused_t, recall = [], [], [], []
        for i, (q, text) in enumerate(zip(qv, qtexts, strict=True)):
            scope = scope_name(int(guild_of_query[i])) if filtered else ""
            t = time.perf_counter()
            got, _ = index.dense_search(q, 10, scope)
            dense_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            index.keyword_search(text, 50, scope)
            kw_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            retriever.search(text, q, 10, scope=scope)
            fused_t.append(time.perf_counter() - t)
            visible = (id_scopes == -1) | (id_scopes == (guild_of_query[i] if filtered else -1))
            sims = all_vecs @ q
            sims[~visible] = -np.inf
            truth = set(ids[np.argpartition(-sims, 10)[:10]].tolist())
            recall.append(len(truth & set(got.tolist())) / 10)
        out[label] = {"dense": pct(dense_t), "keyword": pct(kw_t), "fused_retrieval": pct(fused_t),
                      "recall@10": round(float(np.mean(recall)), 4)}
    return out


def _top10(ids: np.ndarray, scores: np.ndarray) -> list[int]:
    return ids[np.lexsort((ids, -scores))][:10].tolist()  # best first, ties by id (as the SQL orders them)


def keyword_gold_hit(index, qtexts: list[str], gold: list[set[int]], source_of_id: dict[int, int]) -> float:
    """How often the keyword top 10 (base corpus) holds a copy of the question's gold SQuAD passage."""
    hits = [bool({source_of_id[i] for i in _top10(*index.keyword_search(text, 10))} & g)
            for text, g in zip(qtexts, gold, strict=True)]
    return round(float(np.mean(hits)), 4)


def keyword_budget_vs_exhaustive(pg, qtexts: list[str], gold: list[set[int]], source_of_id: dict[int, int]) -> dict:
    """PostgreSQL keyword search (k = 50, base corpus) with its candidate budget against the exhaustive query
    on the same rows: a budget above every estimate ranks every row matching any lexeme, the query qabot
    ran before the budget. Latency, gold passage in the top 10, and overlap of the two top-10 lists."""
    default = pg.KEYWORD_BUDGET
    out: dict = {}
    tops: dict[str, list[list[int]]] = {}
    try:
        for label, budget in (("exhaustive", 10**12), ("with_budget", default)):
            pg.KEYWORD_BUDGET = budget
            lat, tops[label] = [], []
            for text in qtexts:
                t = time.perf_counter()
                ids, scores = pg.keyword_search(text, 50)
                lat.append(time.perf_counter() - t)
                tops[label].append(_top10(ids, scores))
            hits = [bool({source_of_id[i] for i in top} & g) for top, g in zip(tops[label], gold, strict=True)]
            out[label] = {**pct(lat), "gold_hit@10": round(float(np.mean(hits)), 4)}
    finally:
        pg.KEYWORD_BUDGET = default
    out["budget_rows"] = default
    out["top10_overlap"] = round(float(np.mean([len(set(a) & set(b)) / len(a) for a, b in
                                                zip(tops["exhaustive"], tops["with_budget"], strict=True) if a])), 4)
    return out


def _truth(all_vecs, ids, q, visible) -> set[int]:
    sims = all_vecs @ q
    sims[~visible] = -np.inf
    return set(ids[np.argpartition(-sims, 10)[:10]].tolist())


def naive_guild_recall(url: str, qv: np.ndarray, guild_of_query: np.ndarray, ids: np.ndarray,
                       id_scopes: np.ndarray, all_vecs: np.ndarray, ef: int) -> dict:
    """One HNSW index over every row, the guild filter applied to what the scan returns (pgvector < 0.8
    has no iterative scan): the design qabot does not use, measured on the same rows. PostgreSQL's planner
    would pick the exact path through the scope index for a selective filter when it has one; the index is
    dropped inside a rolled-back transaction to measure the HNSW-then-filter plan a store without it gets."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        t = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute("CREATE INDEX bench_all_hnsw ON passages USING hnsw (embedding vector_ip_ops)")
        build = time.perf_counter() - t
        res = {}
        with conn.transaction(force_rollback=True):
            conn.execute("DROP INDEX passages_guild_scope")
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
            for label, both in (("guild_only", False), ("base_plus_guild", True)):
                recall = []
                for i, q in enumerate(qv):
                    g = int(guild_of_query[i])
                    sql = ("SELECT id FROM passages WHERE scope = %(g)s" + (" OR scope = ''" if both else "")
                           + " ORDER BY embedding <#> %(q)s LIMIT 10")
                    got = {r[0] for r in conn.execute(sql, {"g": scope_name(g), "q": q}).fetchall()}
                    visible = (id_scopes == g) | ((id_scopes == -1) if both else False)
                    recall.append(len(_truth(all_vecs, ids, q, visible) & got) / 10)
                res[label] = round(float(np.mean(recall)), 4)
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT id FROM passages WHERE scope = 'guild:1' ORDER BY embedding <#> %s LIMIT 10",
                (qv[0],)).fetchall())
        conn.execute("DROP INDEX bench_all_hnsw")
    return {"recall@10": res, "index_build_s": round(build, 1), "uses_full_index": "bench_all_hnsw" in plan}


def ef_sweep(url: str, qv: np.ndarray, ids: np.ndarray, id_scopes: np.ndarray, all_vecs: np.ndarray) -> dict:
    """Base-corpus recall@10 and latency of the partial HNSW index against hnsw.ef_search."""
    import psycopg
    from pgvector.psycopg import register_vector

    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        for ef in (40, 100, 200, 400):
            conn.execute(f"SET hnsw.ef_search = {ef}")
            recall, lat = [], []
            for q in qv:
                t = time.perf_counter()
                got = {r[0] for r in conn.execute("SELECT id FROM passages WHERE scope = '' ORDER BY embedding <#> %s"
                                                  " LIMIT 10", (q,)).fetchall()}
                lat.append(time.perf_counter() - t)
                recall.append(len(_truth(all_vecs, ids, q, id_scopes == -1) & got) / 10)
            out[ef] = {"recall@10": round(float(np.mean(recall)), 4), **pct(lat)}
    return out


def run_size(n: int, args, base, texts, qv, qtexts, gold, server_url: str | None) -> dict:
    from embeddings.store.embedded.index import EmbeddedIndex
    from embeddings.store.postgres.store import PgIndex

    vectors, scopes = make_rows(n, base, args.guilds)
    model = StoredModel(f"bench-{'random' if args.random else 'minilm'}:{base.shape[1]}", base.shape[1], 256)
    rng = np.random.default_rng(3)
    guild_of_query = rng.integers(0, args.guilds, len(qv))
    result: dict = {"passages": n, "guilds": args.guilds, "guild_rows": int((scopes >= 0).sum()),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_avg_start": os.getloadavg()}
    all_rows = np.arange(n)

    # ---- PostgreSQL: bulk load (index built once), then an incremental tail with the index live
    url = args.pg_url or server_url
    if not args.pg_url:
        from tests.fakes.postgres import create_database

        url = create_database(server_url)
    pg = PgIndex(url, model, pool_size=2)
    tail = min(args.incremental, n // 10)
    bulk_rows, tail_rows = all_rows[: n - tail], all_rows[n - tail:]
    t = time.perf_counter()
    with pg.bulk_load(args.maintenance_work_mem):
        t_ins = load(pg, vectors, scopes, texts, bulk_rows, "postgresql bulk")
    bulk_total = time.perf_counter() - t
    print(f"postgresql: {len(bulk_rows)} rows in {t_ins:.0f} s + HNSW build {bulk_total - t_ins:.0f} s",
          file=sys.stderr, flush=True)
    t_inc = load(pg, vectors, scopes, texts, tail_rows, "postgresql incremental")
    with pg._pool.connection() as conn:
        conn.execute("ANALYZE passages")
    ids, id_scope_names = pg.store.passage_ids_and_scopes()
    # Row r was inserted as passage ids in load order; map back through the texts' copy tag.
    rows_of_ids = np.array([int(t.rsplit("copy", 1)[1]) for _, t, _ in pg.store.iter_passage_texts()])
    id_scopes = scopes[rows_of_ids]
    pg_vecs = vectors[rows_of_ids]
    result["postgresql"] = {
        "ingest_bulk_rows_per_s": round(len(bulk_rows) / bulk_total, 1),
        "ingest_bulk_insert_s": round(t_ins, 1), "hnsw_build_s": round(bulk_total - t_ins, 1),
        "ingest_incremental_rows_per_s": round(len(tail_rows) / t_inc, 1) if len(tail_rows) else None,
        "disk_mb": round(pg.disk_bytes() / 2**20, 1), "ef_search": pg.EF_SEARCH,
        **measure_queries(pg, qv, qtexts, guild_of_query, ids, id_scopes, pg_vecs),
        "keyword_budget_vs_exhaustive": keyword_budget_vs_exhaustive(
            pg, qtexts, gold, dict(zip(ids.tolist(), (rows_of_ids % len(texts)).tolist(), strict=True))),
    }
    pg.close()
    result["postgresql_ef_search"] = ef_sweep(url, qv, ids, id_scopes, pg_vecs)
    if not args.skip_naive:
        result["postgresql_naive_filter"] = naive_guild_recall(url, qv, guild_of_query, ids, id_scopes, pg_vecs,
                                                               PgIndex.EF_SEARCH)
    if not args.pg_url:
        from tests.fakes.postgres import drop_database

        drop_database(server_url, url)
    print(json.dumps(result, indent=1), file=sys.stderr)

    # ---- embedded: SQLite + FAISS (exact) + bm25s, one writer, caches built at the end
    home = Path(tempfile.mkdtemp(prefix="qabot-bench-"))
    try:
        emb = EmbeddedIndex(home / "idx", model)
        t = time.perf_counter()
        load(emb, vectors, scopes, texts, all_rows, "embedded")
        total = time.perf_counter() - t
        ids_e, _ = emb.store.passage_ids_and_scopes()
        rows_e = np.array([int(t.rsplit("copy", 1)[1]) for _, t, _ in emb.store.iter_passage_texts()])
        result["embedded"] = {
            "ingest_rows_per_s": round(n / total, 1), "disk_mb": round(emb.disk_bytes() / 2**20, 1),
            **measure_queries(emb, qv, qtexts, guild_of_query, ids_e, scopes[rows_e], vectors[rows_e]),
            "keyword_gold_hit@10": keyword_gold_hit(emb, qtexts, gold, dict(zip(ids_e.tolist(),
                                                                                (rows_e % len(texts)).tolist(),
                                                                                strict=True))),
        }
        emb.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result["finished"], result["load_avg_end"] = time.strftime("%Y-%m-%d %H:%M:%S"), os.getloadavg()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--guilds", type=int, default=100)
    ap.add_argument("--incremental", type=int, default=5000, help="rows ingested with the HNSW index live")
    ap.add_argument("--random", action="store_true", help="random unit vectors (no model)")
    ap.add_argument("--dim", type=int, default=384, help="with --random")
    ap.add_argument("--pg-url", help="an existing server's database (default: a private pgserver)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--maintenance-work-mem", default="1GB",
                    help="for the HNSW build after the bulk load (1M rows of 384 dimensions: ~3GB)")
    ap.add_argument("--out", default="bench-pg.json")
    args = ap.parse_args()
    base, texts, qv, qtexts, gold = load_base(args.random, args.dim, args.queries)
    server_url = None
    srv = None
    if not args.pg_url:
        import pgserver

        CACHE.mkdir(exist_ok=True)
        srv = pgserver.get_server(CACHE / "pgdata", cleanup_mode="stop")
        server_url = srv.get_uri()
    results = []
    try:
        for n in args.sizes:
            results.append(run_size(n, args, base, texts, qv, qtexts, gold, server_url))
            Path(args.out).write_text(json.dumps(results, indent=1))
            print(json.dumps(results[-1], indent=1))
    finally:
        if srv is not None:
            srv.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
