# Two commands for a fresh machine: `make demo` and `make test` (see README).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gigcx-installed
EXAMPLE := examples/kestrel/gigcx.yaml
# The demo's index and conversations live here, at the repo root, not inside examples/kestrel
# (whose gigcx.yaml would put them in examples/kestrel/.gigcx): copying the example to start
# a brand copies no demo data. Absolute paths, since relative ones in GIGCX_* variables are
# read against the config file's folder, as in gigcx.yaml.
DATA ?= .gigcx/kestrel
DATA_DIR := $(abspath $(DATA))
DEMO_ENV := GIGCX_INDEX__PATH="$(DATA_DIR)/index" GIGCX_STORE__URL="sqlite:///$(DATA_DIR)/gigcx.db"
PORT ?= 8080

.PHONY: install browser demo ask test bench lint

install: $(STAMP)

# torch first, pinned to the CPU build: an unpinned torch pulled in by
# sentence-transformers would be a multi-GB CUDA build.
# The example plugin package (examples/plugins) too, as any plugin is installed: its entry
# points are what tests/test_plugins.py finds it by.
$(STAMP): pyproject.toml examples/plugins/pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps -e examples/plugins
	touch $(STAMP)

# The example brand's shop page with the chat widget: open http://127.0.0.1:8080
# (`make demo PORT=8081` for another port).
demo: install
	$(DEMO_ENV) $(BIN)/gigcx knowledge sync --config $(EXAMPLE)
	$(DEMO_ENV) $(BIN)/gigcx experts sync --config $(EXAMPLE)
	$(DEMO_ENV) $(BIN)/gigcx serve --config $(EXAMPLE) --port $(PORT) --console

# The same bot in the terminal, showing its decisions.
ask: install
	$(DEMO_ENV) $(BIN)/gigcx knowledge sync --config $(EXAMPLE)
	$(DEMO_ENV) $(BIN)/gigcx ask --config $(EXAMPLE)

# PostgreSQL and Redis first (GIGCX_TEST_POSTGRES_URL, GIGCX_TEST_REDIS_URL; see README):
# a missing one is one clear message, not hundreds of failed tests.
test: install browser
	$(BIN)/python -m tests.helpers.check_services
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
