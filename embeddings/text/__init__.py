"""Text in: bytes -> clean article (extract) -> passages and sentences (chunking) -> terms. No store, no encoder."""
