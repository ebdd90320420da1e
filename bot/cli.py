"""The `qabot` command. Core commands never import discord; `qabot run` and `qabot sync` do, lazily."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from bot.render import plural
from embeddings.errors import InputError, QabotError, exit_code, storage_error, user_message

SAMPLE_QUESTION = "why did Egypt cut ties with Iran?"


def _service(args: argparse.Namespace, *, create: bool = True):
    from embeddings.service import QAService
    from embeddings.settings import Settings

    settings = Settings.from_env()
    if getattr(args, "home", None):
        settings = replace(settings, home=Path(args.home))
    if getattr(args, "command", None) == "run" and not settings.torch_threads:
        # Leave a core to the event loop: heartbeats and other users' replies must not wait on encoding.
        settings = replace(settings, torch_threads=max(1, (os.cpu_count() or 2) - 1))
    return QAService(settings, create=create)


# ---- rendering for terminals
def _style(out: TextIO) -> tuple[str, str, str]:
    if out.isatty() and not os.environ.get("NO_COLOR"):
        return "\033[1m", "\033[2m", "\033[0m"
    return "", "", ""


def render_answer(answer, out: TextIO) -> None:
    from embeddings.models import NOT_FOUND, NOT_FOUND_HINT

    bold, dim, reset = _style(out)
    if answer.interpreted_as:
        print(f"{dim}read as: {answer.interpreted_as}{reset}", file=out)
    if not answer.found:
        print(NOT_FOUND, file=out)
        if answer.suggestions:  # the closest articles (not answers): where the question might be asked better
            print(f"{dim}{NOT_FOUND_HINT}{reset}", file=out)
            for title in answer.suggestions:
                print(f"{dim}  - {title}{reset}", file=out)
        return
    print(f"{bold}{answer.text}{reset}\n", file=out)
    p = answer.best_passage
    if p is not None:
        text = p.text
        marks = sorted((s.start, s.end) for s in answer.sentences if s.passage_id == p.passage_id)
        pieces, pos = [], 0
        for s, e in marks:
            pieces += [text[pos:s], f"{bold}»{text[s:e]}«{reset}"]
            pos = e
        pieces.append(text[pos:])
        print("".join(pieces), file=out)
        print(f"\n{dim}— {p.citation.short()}{reset}", file=out)
        if p.citation.source:
            print(f"{dim}  {p.citation.source}{reset}", file=out)
    print(f"{dim}confidence {answer.confidence:.2f} · {answer.timings.total_ms:.0f} ms{reset}", file=out)


# ---- commands
def cmd_ingest(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        def committed(outcomes) -> None:
            if args.verbose:
                for o in outcomes:
                    print(f"committed\t{o.doc_key}\t{o.name}", flush=True)

        report = svc.ingest(args.inputs, progress=None if not args.quiet else False, on_commit=committed)
    for o in report.outcomes:
        if o.status == "unchanged":
            print(f"unchanged (already ingested): {o.name} [{o.doc_key}]")
        else:
            twin = f" (the same text as {o.same_text_as}: answers show it once)" if o.same_text_as else ""
            print(f"{o.status}: {o.name} [{o.doc_key}] {o.title!r}, {plural(o.passages, 'passage')}{twin}")
    for f in report.failures:
        print(f"error: {f.name}: {f.message}", file=sys.stderr)
    rate = report.embedded / report.seconds if report.seconds else 0.0
    print(f"{report.count('added')} added, {report.count('updated')} updated, {report.count('unchanged')} unchanged,"
          f" {len(report.failures)} failed; {report.embedded} passages embedded, {report.reused} reused"
          f" ({report.seconds:.1f} s, {rate:.0f} passages/s)")
    return 0 if report.ok else 2


def _no_articles_hint(svc) -> None:
    """An index with no article answers nothing: say how to add one (on stderr, so --json stays clean)."""
    if svc.stats().documents == 0:
        print(f"qabot: the index at {svc.index.location} has no articles yet: add some with "
              "`qabot ingest PATH|URL` (the sample article: `qabot ingest seeds/`)", file=sys.stderr)


def cmd_ask(args: argparse.Namespace) -> int:
    with _service(args, create=False) as svc:  # asking never creates an index
        answer = svc.ask(args.question, k=args.k)
        if not answer.found:
            _no_articles_hint(svc)
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
    else:
        render_answer(answer, sys.stdout)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """A conversation: each question is read in the light of the ones before it (a follow-up like "why?"
    or "when did she die?"); a line `/new` starts a fresh one. --json: questions from stdin, one per line,
    one JSON object per answer (what `ask --json` prints), nothing else on stdout."""
    from embeddings.models import Turn

    with _service(args, create=False) as svc:
        _no_articles_hint(svc)
        history: list[Turn] = []
        if not args.json:
            print("Ask about the articles (/new starts a new conversation; empty line or Ctrl-D to quit).")
        while True:
            try:
                line = sys.stdin.readline() if args.json else input("? ")
            except EOFError:
                print()
                break
            if args.json and not line:
                break
            question = line.strip()
            if not question:
                if args.json:
                    continue
                break
            if question == "/new":
                history.clear()
                if not args.json:
                    print("(new conversation)\n")
                continue
            try:
                answer = svc.ask(question, history=history)
            except QabotError as exc:
                if args.json:
                    print(json.dumps({"question": question, "error": user_message(exc)}), flush=True)
                else:
                    print(user_message(exc), file=sys.stderr)
                continue
            history = [*history, answer.as_turn()][-2:]
            if args.json:
                print(json.dumps(answer.to_json(), ensure_ascii=False), flush=True)
            else:
                render_answer(answer, sys.stdout)
                print()
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    with _service(args, create=False) as svc:
        docs = svc.documents()
    if args.json:
        print(json.dumps([{"doc": d.doc_key, "title": d.title, "source": d.source, "scope": d.scope,
                           "outlet": d.outlet, "published": d.published, "ingested_at": d.ingested_at,
                           "passages": d.passages} for d in docs], ensure_ascii=False))
        return 0
    if not docs:
        print("No documents yet: qabot ingest PATH|URL")
    for d in docs:
        scope = f" ({d.scope})" if d.scope else ""
        print(f"{d.doc_key}  {d.passages:4d} passages  {d.title[:60]}{scope}\n{'':14}{d.source}")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    """Re-embed the stored passages with the current encoder backend (QABOT_ENCODER_BACKEND, else the
    default), e.g. a torch index onto onnx-int8. Unset, the index's own backend would be chosen, so reindex
    names the target itself."""
    from embeddings.encoders.base import DEFAULT_BACKEND
    from embeddings.service import QAService
    from embeddings.settings import Settings

    settings = Settings.from_env()
    if getattr(args, "home", None):
        settings = replace(settings, home=Path(args.home))
    settings = replace(settings, encoder_backend=args.backend or settings.encoder_backend or DEFAULT_BACKEND)
    with QAService(settings, create=False) as svc:
        report = svc.reindex(progress=None if not args.quiet else False, force=args.force)
    if report.unchanged:
        print(f"the index already holds {report.backend} vectors ({report.passages} passages): nothing to "
              "re-embed (--force re-embeds them anyway)")
        return 0
    resumed = f", {report.resumed} already staged by an interrupted run" if report.resumed else ""
    rate = report.embedded / report.seconds if report.seconds else 0.0
    print(f"re-embedded {report.passages} passages with {report.backend} (was {report.backend_before}): "
          f"{report.embedded} embedded now{resumed} ({report.seconds:.1f} s, {rate:.0f} passages/s)")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    with _service(args, create=False) as svc:
        removed = svc.remove(args.doc)
    for title in removed:
        print(f"removed: {title}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _service(args, create=False) as svc:
        st = svc.stats()
        report = svc.index.integrity()
    data = {**st.__dict__, "encoder_backend": svc.index.config.encoder_backend, "store": svc.index.describe(),
            "integrity": "ok" if report.ok else "; ".join(report.problems)}
    if args.json:
        print(json.dumps(data))
    else:
        for k, v in data.items():
            print(f"{k:12} {v}")
    return 0 if report.ok else 1  # scripts and monitoring see a real integrity failure


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy the current index (QABOT_STORE, else --home / QABOT_HOME) to --to, without re-embedding."""
    from embeddings.settings import Settings
    from embeddings.store.factory import open_store, read_config
    from embeddings.store.migrate import StoredModel, copy_index

    settings = Settings.from_env()
    if getattr(args, "home", None):
        settings = replace(settings, home=Path(args.home), store="")
    location = args.source or settings.location
    cfg = read_config(location)  # the model it names, so opening it to copy loads no model
    source = open_store(location, StoredModel(cfg.model, cfg.dimension, cfg.max_tokens, cfg.encoder_backend),
                        create=False)
    try:
        report = copy_index(source, args.to, progress=None if not args.quiet else False)
    finally:
        source.close()
    print(f"copied {report.documents} documents, {report.passages} passages, {report.feedback} votes"
          f"\n  from {report.source}\n  to   {report.target}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """What `make run` does without a terminal and without a question: one sample answer and a hint."""
    with _service(args) as svc:
        print(f"? {SAMPLE_QUESTION}")
        render_answer(svc.ask(SAMPLE_QUESTION), sys.stdout)
    print("\nAsk your own: make run Q=\"...\"  ·  chat: qabot chat  ·  Discord: set DISCORD_TOKEN and run make run")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from embeddings.encoders.factory import load_encoder
    from embeddings.evaluation import runner
    from embeddings.evaluation.datasets import abstention_sets, load_dataset, project_root
    from embeddings.settings import Settings

    settings = Settings.from_env()
    try:
        ds = load_dataset(args.dataset, args.split)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    if args.limit:
        from dataclasses import replace

        ds = replace(ds, questions=ds.questions[: args.limit])
    encoder = load_encoder(settings.embed_model, backend=settings.backend_for(None), cache_dir=settings.encoder_cache)
    cache = Path(args.cache) if args.cache else runner.default_cache_root()
    if ds.passages is None:
        index = runner.build_seed_index([project_root() / "seeds"], encoder, cache)
    else:
        if args.abstention:
            ds = abstention_sets(ds)
        index = runner.build_index(ds, encoder, cache)
    if args.calibrate and not args.abstention:
        raise InputError("--calibrate needs --abstention (it separates answerable from unanswerable questions)")
    if args.calibrate and args.split != "tune":
        raise InputError("--calibrate chooses a threshold: only on --split tune (held-out data is for reporting)")
    modes = runner.MODES if args.compare else ("final",)
    seen: list[tuple[float, bool]] = []
    run = runner.evaluate(ds, index, encoder, modes=modes,
                          on_answer=lambda q, ans: seen.append((ans.confidence, q.answerable)))
    index.close()
    if args.calibrate:
        from embeddings.evaluation.calibrate import best_threshold

        threshold, accuracy = best_threshold([c for c, _ in seen], [a for _, a in seen])
        print(f"calibrated answer_threshold = {threshold:.4f} (tune abstention accuracy {accuracy:.4f}, "
              f"n={len(seen)}); set RetrievalParams.answer_threshold to it")
    if args.plot:
        runner.plot([run], Path(args.plot))
    print(json.dumps(run.to_json()) if args.json else runner.format_table(run))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from embeddings.benchmark import harness, report

    systems = ["qabot", *[p.strip() for p in (args.peers or "").split(",") if p.strip()]]
    if args.peers:
        from embeddings.benchmark.peers import PEERS

        unknown = [s for s in systems[1:] if s not in PEERS]
        if unknown:
            raise InputError(f"unknown peer {unknown[0]!r}: choose from {', '.join(PEERS)}")
    sizes = [] if args.no_speed else (args.passages or list(harness.DEFAULT_SIZES))
    if any(n < 100 for n in sizes):
        raise InputError("--passages must be at least 100")
    dense = (args.dense or [100_000, 1_000_000]) if args.dense is not None else []
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="qabot-bench-"))
    say = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    say(f"benchmark work directory: {workdir}")
    result = harness.run(sizes, systems, workdir, peer_sizes=args.peer_passages,
                         recall_sets=() if args.no_recall else (args.recall_sets or harness.RECALL_SETS),
                         recall_limit=args.recall_questions or None, dense_sizes=dense,
                         ingest_limit=args.ingest_limit or None, say=say)
    if args.plot:
        if report.plot(result, Path(args.plot)):
            say(f"plot written to {args.plot}")
        else:
            say(f"no plot written to {args.plot}: the run measured no sizes and no recall")
    print(json.dumps(result.to_json(), indent=1) if args.json else report.format_table(result))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the Discord bot until stopped (Ctrl-C). Needs DISCORD_TOKEN."""
    import asyncio
    import logging

    from embeddings.settings import BotSettings

    bot_settings = BotSettings.from_env()
    bot_settings.require_token()  # fail before loading the model
    from bot.app import freeze_startup_heap, run_bot

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _service(args) as svc:
        svc.warm_up()
        freeze_startup_heap()
        asyncio.run(run_bot(svc, bot_settings))
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    """Readers' thumbs up/down, and what they wrote after a 👎, as eval questions (shared/eval/seed format);
    mapping in embeddings/store/feedback.py."""
    with _service(args, create=False) as svc:
        rows = svc.export_feedback(include_unlabelled=args.include_unlabelled)
        # Corrections (the 👎 form) come with thumbs down, which label nothing: say what was left out.
        held = [] if args.include_unlabelled else [
            r for r in svc.export_feedback(include_unlabelled=True) if r.get("needs_review") and r["corrections"]]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.out and args.out != "-":
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(rows)} questions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if held:
        print(f"{len(held)} thumbs-down questions with readers' corrections not written (no label yet); "
              "--include-unlabelled writes them for review", file=sys.stderr)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Register the slash commands with Discord (globally, or in one server at once), then exit."""
    import asyncio

    from embeddings.settings import BotSettings

    bot_settings = BotSettings.from_env()
    bot_settings.require_token()
    from bot.app import sync_commands

    names = asyncio.run(sync_commands(bot_settings, args.guild))
    where = f"to server {args.guild}" if args.guild else "globally"
    print(f"synced {len(names)} commands {where}: {', '.join('/' + n for n in names)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from embeddings.encoders.base import BACKENDS, DEFAULT_BACKEND

    parser = argparse.ArgumentParser(prog="qabot", description="Answers questions from articles, with citations.")
    parser.add_argument("--home", help="index directory (default: $QABOT_HOME or the user data dir)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="add articles: files, folders or http(s) URLs")
    p.add_argument("inputs", nargs="+", metavar="PATH|URL")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="print a line as each batch commits")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("question")
    p.add_argument("--k", type=int, default=None, help="passages to return (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="a conversation: follow-ups are read in the light of earlier questions")
    p.add_argument("--json", action="store_true",
                   help="read questions from stdin, one per line (/new: new conversation); one JSON object per answer")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("ls", help="list ingested documents")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("rm", help="remove a document (by key, path/URL or title)")
    p.add_argument("doc")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("reindex", help="re-embed every stored passage with the current encoder backend "
                       "(e.g. a torch index onto onnx-int8), without reading the sources again")
    p.add_argument("--backend", choices=BACKENDS, help="the backend to re-embed with (default: "
                   f"QABOT_ENCODER_BACKEND, else {DEFAULT_BACKEND})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="re-embed even when the index already holds this backend's vectors")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("stats", help="index size, model and integrity")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("migrate", help="copy the index to PostgreSQL or back to a directory, without re-embedding")
    p.add_argument("--to", required=True, metavar="postgresql://...|DIR", help="target store (created if needed)")
    p.add_argument("--from", dest="source", metavar="postgresql://...|DIR",
                   help="source store (default: QABOT_STORE, else --home / QABOT_HOME)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("eval", help="retrieval and answer metrics on an evaluation set (../shared/eval/...)")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("--split", choices=["tune", "heldout", "all"], default="all")
    p.add_argument("--compare", action="store_true", help="BM25, dense, fusion and the final pipeline side by side")
    p.add_argument("--abstention", action="store_true",
                   help="index a seeded half of the articles; questions on the other half must be refused")
    p.add_argument("--calibrate", action="store_true",
                   help="with --abstention on the tune split: print the threshold that best separates them")
    p.add_argument("--limit", type=int, default=0, help="only the first N questions of the split")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--cache", help="where dataset indexes are cached (default: the user cache dir)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="speed benchmark: ingest rate, latency, cold start, memory (and peers)")
    p.add_argument("--passages", type=int, nargs="+", metavar="N",
                   help="corpus sizes (default: 10000 100000)")
    p.add_argument("--peers", default="", help="comma-separated peers to run too: txtai, txtai-hybrid, langchain, "
                   "langchain-ensemble (needs: pip install 'torch==2.13.0' -e '.[bench]')")
    p.add_argument("--peer-passages", type=int, nargs="+", metavar="N",
                   help="run peers only at these sizes (default: every size)")
    p.add_argument("--recall-questions", type=int, default=1000, metavar="N",
                   help="held-out questions per recall set (0: all; default 1000)")
    p.add_argument("--no-recall", action="store_true", help="skip recall@k on SQuAD and SciFact")
    p.add_argument("--no-speed", action="store_true", help="skip the corpus-size runs (recall and --dense only)")
    p.add_argument("--recall-sets", nargs="+", choices=("squad_v1_dev", "scifact"), metavar="SET",
                   help="recall sets to run (default: squad_v1_dev scifact)")
    p.add_argument("--ingest-limit", type=int, default=0, metavar="N",
                   help="above N passages, measure qabot on a copy of the largest ingested index (encoding 100k "
                        "passages on 2 cores takes over an hour): questions, then 500 fresh passages ingested "
                        "into the copy; peers skip those sizes")
    p.add_argument("--dense", type=int, nargs="*", metavar="N",
                   help="also the dense index alone at N vectors (e.g. 100000 1000000): exact vs IVF")
    p.add_argument("--workdir", help="where corpora and indexes go (default: a new temp dir); reused recall "
                   "indexes make reruns faster")
    p.add_argument("--json", action="store_true", help="print figures as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the figures")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sync", help="register the bot's slash commands with Discord (needs DISCORD_TOKEN)")
    p.add_argument("--guild", type=int, metavar="ID", help="only this server (shows at once); default: global")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("feedback", help="readers' thumbs up/down on Discord answers")
    fsub = p.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    p = fsub.add_parser("export", help="write votes as eval questions (JSON lines, shared/eval/seed format)")
    p.add_argument("--out", metavar="FILE", help="output file (default: standard output)")
    p.add_argument("--include-unlabelled", action="store_true",
                   help="also write thumbs-down questions (answerable: null, needs_review: true)")
    p.set_defaults(func=cmd_feedback_export)

    p = sub.add_parser("demo", help="answer the sample question (used by make run without a terminal)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from dotenv import load_dotenv

        load_dotenv(override=False)
    except ImportError:  # pragma: no cover
        pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "k", None) is not None and not 1 <= args.k <= 50:
        parser.error("--k must be between 1 and 50")
    try:
        return int(args.func(args))
    except (QabotError, KeyboardInterrupt) as exc:
        print(f"qabot: {user_message(exc)}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # a full disk or read-only medium that no layer translated: one line, not a traceback
        if storage_error(exc) is None:
            raise
        print(f"qabot: {user_message(exc)}", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
