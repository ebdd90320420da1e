"""What an index says about itself (config.json): model, dimension, chunking, retrieval parameters.
Process settings from the environment are in embeddings/settings.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from embeddings.text.chunking import ChunkSettings

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RetrievalParams:
    """Knobs of the answer path. An index's config.json stores the ones set for it (tuned on its own data,
    say); unset ones take these defaults."""

    candidates: int = 50          # taken from each retriever before fusion
    dense_weight: float = 0.5     # fused = w * z(dense) + (1 - w) * z(bm25)
    answer_passages: int = 3      # passages whose sentences compete to be the answer
    # The models below are fitted by tools/fit_weights.py on a mix of question styles, each tune set weighing
    # the same: SQuAD's tune split, nq_open (real search queries) and coqa_conv (follow-ups). Figures are on
    # the third of each set held back from the fits (by article), measured 2026-12-03 on onnx-int8 vectors.
    # Confidence = sigmoid(w . answer.CONFIDENCE_FEATURES + b): logistic on each tune set's abstention
    # version (half its articles indexed), classes and sets balanced. The threshold maximises the mean over
    # sets of the balanced answer/refuse accuracy: SQuAD 0.951, NQ 0.874, CoQA 0.563 (answerable answered:
    # 0.938, 0.967, 0.457). A model of 3 weights (an index's override from before) reads the first three.
    # Rerun with the fit reading questions rewritten as answer() does (text/phrasing.py), the tool's defaults
    # give reranker weights within 0.08 of these, confidence weights within 0.33 and threshold 0.49; these,
    # measured on every set, are kept.
    confidence_weights: tuple[float, ...] = (3.372, 5.268, -0.563, 3.79, 0.545)
    confidence_bias: float = -5.688
    answer_threshold: float = 0.47  # below this confidence qabot says it does not know
    rerank_depth: int = 20          # fused candidates re-scored with sentence-level evidence
    # Passage reranker over answer.RERANK_FEATURES (conditional logit on SQuAD + NQ; its last two features
    # make the dense / keyword balance depend on the question). R@1, fused -> reranked: SQuAD 0.803 -> 0.846,
    # NQ 0.877 -> 0.899 (dense alone 0.885). Empty: none.
    rerank_weights: tuple[float, ...] = (0.003, 0.39, 1.049, 1.605, 1.804, 1.58, 0.921, 1.586, 0.489)
    # Linear sentence scorer over answer.SENTENCE_FEATURES (cosine, overlap, overlap_prev, bigrams,
    # type_cue, passage_prior), scaled so the cosine weight is 1; still the SQuAD-only fit. Tried and not
    # kept (2026-12-03, onnx-int8): the full refit on the mix, also as two weight vectors blended by question
    # coverage: NQ 0.595 -> 0.613 on its check third, but SQuAD held-out R@1 0.865 -> 0.855 and answer hit
    # 0.745 -> 0.732; a passage prior raised by 3.0 for questions no sentence shares words with (chosen on the
    # tune sets): NQ final R@1 0.870 -> 0.884 (= dense), but SQuAD held-out 0.871 -> 0.865 and SciFact
    # 0.603 -> 0.597; a seventh feature, the passage's reranker logit minus the top passage's (an answer
    # otherwise moves to a lower passage whenever a sentence there scores a little higher, however sure the
    # reranker is), weight 0.8 by line search on the tune sets' fit parts: NQ final R@1 0.870 -> 0.886,
    # answer hit 0.568 -> 0.573, CoQA with history 0.281 -> 0.315, SQuAD tune 0.836 -> 0.836, but SQuAD
    # held-out 0.871 -> 0.863 (answer hit 0.749 -> 0.742) and SciFact 0.603 -> 0.593; that feature scaled by
    # the share of question terms no sentence holds: NQ 0.882, SQuAD tune unchanged, SQuAD held-out 0.867.
    # Sentence position, length, and words or names the question lacks: within 0.01 on every check third.
    # All broke floors the answer path must keep, or gained nothing.
    sentence_weights: tuple[float, ...] = (1.0, 1.304, 0.618, 0.102, 0.44, 0.423)

    # Conversations (embeddings/answering/conversation.py), for a question with a back-reference only:
    # the dense query is the question's vector plus this share of the earlier questions' ...
    history_dense_weight: float = 2.0
    # ... and a candidate near the previous answer's passage (prior 1: that passage or the next/previous one
    # of its document; 0.6: elsewhere in that document) gains these, in fused z units and in reranker logits
    # (the reranker's, by line search on coqa_conv's fit part).
    history_fusion_weight: float = 1.0
    history_rerank_weight: float = 4.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RetrievalParams:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        for key in ("sentence_weights", "rerank_weights", "confidence_weights"):
            if key in values:
                values[key] = tuple(float(x) for x in values[key])
        return cls(**values)


@dataclass(frozen=True)
class IndexConfig:
    model: str
    dimension: int
    max_tokens: int
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    retrieval: RetrievalParams = field(default_factory=RetrievalParams)
    schema_version: int = SCHEMA_VERSION
    created_at: str = ""
    # The vectors' name (encoders/base.py vectors_of): the runtime that computed them, torch fp32 or an int8
    # one, with the int8 build from the second on ("onnx-int8@2"); cosine ~0.99 apart, so one index never
    # mixes them. Indexes from before 2026-12 were all torch.
    encoder_backend: str = "torch"

    def to_json(self) -> str:
        data = asdict(self)
        data["chunking"] = self.chunking.to_json()
        # Only parameters set for this index are stored: the rest follow the installed qabot, so an upgrade
        # with better-fitted weights reaches indexes built before it.
        defaults = asdict(RetrievalParams())
        data["retrieval"] = {k: v for k, v in asdict(self.retrieval).items() if v != defaults[k]}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> IndexConfig:
        data = json.loads(text)
        chunk_known = {f.name for f in fields(ChunkSettings)}
        return cls(
            model=data["model"],
            dimension=int(data["dimension"]),
            max_tokens=int(data.get("max_tokens", 256)),
            chunking=ChunkSettings(**{k: v for k, v in data.get("chunking", {}).items() if k in chunk_known}),
            retrieval=RetrievalParams.from_json(data.get("retrieval")),
            schema_version=int(data.get("schema_version", 0)),
            created_at=data.get("created_at", ""),
            encoder_backend=data.get("encoder_backend", "torch"),
        )

    def with_retrieval(self, **changes: Any) -> IndexConfig:
        return replace(self, retrieval=replace(self.retrieval, **changes))
