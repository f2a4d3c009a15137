# Two commands for a fresh machine: `make demo` and `make test` (see README).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gigcx-installed
EXAMPLE := examples/kestrel/gigcx.yaml

.PHONY: install browser demo ask test bench lint

install: $(STAMP)

# torch first, pinned to the CPU build: an unpinned torch pulled in by
# sentence-transformers would be a multi-GB CUDA build.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# The example brand's shop page with the chat widget: open http://127.0.0.1:8080
demo: install
	$(BIN)/gigcx knowledge sync --config $(EXAMPLE)
	$(BIN)/gigcx experts sync --config $(EXAMPLE)
	@echo "Open http://127.0.0.1:8080 (the shop) and http://127.0.0.1:8080/console (the expert side, with the token printed below)"
	$(BIN)/gigcx serve --config $(EXAMPLE) --console

# The same bot in the terminal, showing its decisions.
ask: install
	$(BIN)/gigcx knowledge sync --config $(EXAMPLE)
	$(BIN)/gigcx ask --config $(EXAMPLE)

test: install browser
	$(BIN)/ruff check gigcx tests benchmarks
	$(BIN)/python -m pytest

# The widget's browser tests drive Debian's Chromium through Playwright; no browser is
# ever downloaded by Playwright itself.
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

bench: install
	$(BIN)/python benchmarks/knowledge_bench.py
	$(BIN)/python benchmarks/clinc150_quality.py
	$(BIN)/python benchmarks/relay_latency.py
	$(BIN)/python benchmarks/websocket_chats.py
	$(BIN)/python benchmarks/surge.py
