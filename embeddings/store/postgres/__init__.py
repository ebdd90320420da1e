"""The PostgreSQL + pgvector store: the same interface for several bot processes sharing one database."""
