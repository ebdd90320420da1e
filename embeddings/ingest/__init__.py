"""Inputs to stored passages: sources (files, folders, URLs), safe fetching, and the pipeline that extracts, chunks, embeds and commits."""
