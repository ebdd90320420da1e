# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first and pinned: pip takes the CPU build from this machine's disk; unpinned it pulls CUDA.
TORCH := torch==2.13.0

.PHONY: run test setup index lint eval bench bench-speed bench-discord clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q $(TORCH) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Build the index from seeds/ when there is none yet (ingest is a no-op for unchanged files anyway).
index: $(STAMP)
	@$(BIN)/qabot ls >/dev/null 2>&1 || $(BIN)/qabot ingest seeds

# With DISCORD_TOKEN: the bot. With Q: one answer. In a terminal: a chat. Otherwise: a sample answer.
run: index
	@if [ -n "$$DISCORD_TOKEN" ]; then exec $(BIN)/qabot run; \
	elif [ -n "$(Q)" ]; then $(BIN)/qabot ask "$(Q)"; \
	elif [ -t 0 ] && [ -t 1 ]; then $(BIN)/qabot chat; \
	else $(BIN)/qabot demo; fi

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# ruff over everything, mypy (untyped bodies checked too) over the installed packages.
lint: $(STAMP)
	$(BIN)/ruff check bot embeddings tests bench tools
	$(BIN)/mypy --check-untyped-defs bot embeddings

EVAL := ../shared/eval
# The README's evaluation tables, reproduced (dataset indexes are cached in the user cache dir).
eval: $(STAMP)
	mkdir -p eval-out
	$(BIN)/qabot eval $(EVAL)/squad_v1_dev --split heldout --compare --plot eval-out/squad-heldout.png
	$(BIN)/qabot eval $(EVAL)/squad_v1_dev --split heldout --abstention
	$(BIN)/qabot eval $(EVAL)/scifact --split heldout --compare --plot eval-out/scifact.png
	$(BIN)/qabot eval $(EVAL)/seed --compare
	$(BIN)/qabot eval $(EVAL)/seed_chat --compare
	$(BIN)/qabot eval $(EVAL)/nq_open --split all --compare
	$(BIN)/qabot eval $(EVAL)/nq_open --split all --abstention
	$(BIN)/qabot eval $(EVAL)/coqa_conv --split all --compare
	$(BIN)/qabot eval $(EVAL)/coqa_conv --split all --abstention
	$(BIN)/qabot eval $(EVAL)/squad_v1_dev --split tune --abstention

# Benchmarks (not tests): speed against txtai and LangChain (README "Speed"), then the Discord bot under load.
bench: bench-speed bench-discord

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q $(TORCH) -e '.[bench]'
	touch $(BENCH_STAMP)

# qabot at 10k and 100k passages, peers at 10k, recall on SQuAD/SciFact held-out, the dense index at 100k/1M.
# Reuses bench-out/work (recall indexes) between runs; delete it for a cold run.
bench-speed: $(BENCH_STAMP)
	mkdir -p bench-out
	bash -o pipefail -c "$(BIN)/qabot bench --peers txtai,txtai-hybrid,langchain,langchain-ensemble \
		--peer-passages 10000 --dense 100000 1000000 --workdir bench-out/work --plot bench-out/bench.png \
		$(BENCH_ARGS) | tee bench-out/bench.txt"

# The Discord bot under load: 50 questions at once against the loopback fake, real model.
bench-discord: $(STAMP)
	$(BIN)/python bench/discord_load.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
