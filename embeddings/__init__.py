"""qabot core: ingest articles, index passages, retrieve and answer. Never imports discord."""
