# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install run test test-fast test-python test-js system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

# npm's puppeteer-core drives Debian's Firefox ESR in the tests; it must not
# download a browser of its own.
$(NODE_STAMP): package.json package-lock.json
	PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --quiet
	touch $(NODE_STAMP)

# The client's types, from the npm devDependency: every module
# (tsconfig.json), the P2P and playback shells with every parameter typed
# (tsconfig.shells.json), the pure modules with all of strict (tsconfig.strict.json).
TSC := node_modules/.bin/tsc -p tsconfig.json && node_modules/.bin/tsc -p tsconfig.shells.json && node_modules/.bin/tsc -p tsconfig.strict.json

run: $(STAMP)
	$(BIN)/ztream serve $(if $(CONFIG),--config $(CONFIG))

# What the tests need from the system: ffmpeg (the real one, plus mkvinfo as
# an independent WebM parser), Chromium for the browser tests, Prometheus for
# the dashboard queries, node for the client's unit tests. Installed when missing.
system-deps:
	@bash scripts/system-deps.sh

test: $(STAMP) system-deps $(NODE_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider
	node --test --test-reporter=dot tests/js/
	$(TSC)

# A quick subset while working: no browsers, namespaces or clusters.
test-fast: $(STAMP) system-deps $(NODE_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"
	node --test --test-reporter=dot tests/js/
	$(TSC)

bench: $(STAMP)
	$(BIN)/ztream bench transcode

clean:
	rm -rf $(VENV) .pytest_cache
