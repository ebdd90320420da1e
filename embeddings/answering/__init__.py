"""Question to answer: hybrid retrieval and fusion (retrieval.py), answer-sentence choice and abstention (answer.py)."""
