"""The embedded store: one directory with SQLite as the source of truth and FAISS + BM25 caches published atomically."""
