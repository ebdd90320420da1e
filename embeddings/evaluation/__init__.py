"""Offline evaluation: load the shared eval sets (../shared/eval) and score retrieval/answer runs."""

from embeddings.evaluation.datasets import (
    EvalDataset,
    EvalPassage,
    EvalQuestion,
    abstention_sets,
    default_eval_root,
    detect_kind,
    load_dataset,
)
from embeddings.evaluation.metrics import (
    RESULT_KEYS,
    MetricAccumulator,
    answer_hit,
    fraction_recall_at_k,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
)

__all__ = [
    "RESULT_KEYS",
    "EvalDataset",
    "EvalPassage",
    "EvalQuestion",
    "MetricAccumulator",
    "abstention_sets",
    "answer_hit",
    "default_eval_root",
    "detect_kind",
    "fraction_recall_at_k",
    "load_dataset",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_answer",
    "percentile",
    "recall_at_k",
]
