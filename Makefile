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

.PHONY: install browser demo ask test bench lint rasa-venv rasa rasa-demo

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
# The Rasa tests run a real Rasa from its own venv (`rasa-venv`, below).
test: install browser rasa-venv
	$(BIN)/python -m tests.helpers.check_services
	$(BIN)/ruff check gigcx tests benchmarks
	GIGCX_RASA_VENV="$(RASA_VENV)" $(BIN)/python -m pytest

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

# ------------------------------------------------------------------ Rasa (bot.mode: rasa)
# Rasa 3.6 runs on Python 3.10, so it lives in a venv of its own, never in gigcx's. It takes
# minutes to install, so it is kept outside the checkout (RASA_VENV) and shared by clones.
RASA_VERSION := 3.6.21
RASA_VENV ?= $(HOME)/.cache/gigcx/rasa-$(RASA_VERSION)
RASA_PROJECT ?= examples/rasa/helpdesk
RASA_MODELS := $(abspath .gigcx/rasa/models)
PYTHON310 ?= $(shell for p in python3.10 $(HOME)/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo $$p; break; }; done)
RASA_ENV := RASA_TELEMETRY_ENABLED=false SQLALCHEMY_SILENCE_UBER_WARNING=1 TF_CPP_MIN_LOG_LEVEL=2

rasa-venv: $(RASA_VENV)/.gigcx-installed .gigcx/rasa/action-installed

$(RASA_VENV)/.gigcx-installed:
	@test -n "$(PYTHON310)" || { echo "Rasa $(RASA_VERSION) needs Python 3.10: install it (e.g. pyenv install 3.10) or set PYTHON310=/path/to/python3.10" >&2; exit 2; }
	$(PYTHON310) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/pip install --quiet --upgrade pip
	$(RASA_VENV)/bin/pip install --quiet rasa==$(RASA_VERSION)
	touch $@

# gigcx's custom action (integrations/rasa), installed again when it changes: a copy, not
# editable, since the venv outlives this checkout.
.gigcx/rasa/action-installed: $(RASA_VENV)/.gigcx-installed integrations/rasa/pyproject.toml $(wildcard integrations/rasa/gigcx_rasa/*.py)
	$(RASA_VENV)/bin/pip install --quiet --no-deps --force-reinstall ./integrations/rasa
	mkdir -p $(@D) && touch $@

# Train the example assistant (skipped when nothing changed) and run it on loopback: Rasa on
# 5005 (REST channel and HTTP API), its action server on 5055. Ctrl-C stops both. Then, in
# another terminal: `make rasa-demo`.
rasa: rasa-venv
	cd $(RASA_PROJECT) && $(RASA_ENV) $(RASA_VENV)/bin/rasa train --domain domain \
		--out $(RASA_MODELS) --fixed-model-name helpdesk
	cd $(RASA_PROJECT) && $(RASA_ENV) RASA_VENV="$(RASA_VENV)" MODEL="$(RASA_MODELS)/helpdesk.tar.gz" \
		$(abspath examples/rasa/serve.sh)

# The widget in front of that Rasa: open http://127.0.0.1:8080 (`PORT=` for another port).
RASA_DATA := $(abspath .gigcx/rasa/gigcx)
RASA_DEMO_ENV := GIGCX_INDEX__PATH="$(RASA_DATA)/index" GIGCX_STORE__URL="sqlite:///$(RASA_DATA)/gigcx.db"
rasa-demo: install
	$(RASA_DEMO_ENV) $(BIN)/gigcx knowledge sync --config examples/rasa/gigcx.yaml
	$(RASA_DEMO_ENV) $(BIN)/gigcx experts sync --config examples/rasa/gigcx.yaml
	$(RASA_DEMO_ENV) $(BIN)/gigcx serve --config examples/rasa/gigcx.yaml --port $(PORT) --console
