"""The Discord cogs, loaded by name as extensions in QABot.setup_hook; each module has its setup(bot)."""
