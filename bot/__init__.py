"""qabot's user-facing layers: the command line and the Discord bot."""
