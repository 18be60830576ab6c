# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser demo test lint docs clean

install: $(VENV)/.installed browser

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Debian packages the tests use: Chromium for the browser tests of the HTML report (tests/browser.py drives it
# through Playwright, which comes with the dev extra; never `playwright install`) and Graphviz's `dot` for
# `inspect --plot`, installed as root when absent. Without root (or apt-get) those tests are skipped, and make says
# so in one line.
browser:
	@missing=""; [ -x /usr/bin/chromium ] || missing=" chromium"; command -v dot >/dev/null || missing="$$missing graphviz"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "missing Debian packages:$$missing (install them as root): the browser and --plot tests will be skipped"; \
	else \
	  echo "installing Debian packages for the tests:$$missing"; \
	  log=$$(mktemp); \
	  if (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	      $$missing) >$$log 2>&1; then rm -f $$log; else cat $$log; rm -f $$log; exit 1; fi; \
	fi

demo: install
	$(BIN)/cnnrun train configs/quickstart.yaml

# two test processes: the 2-core machines CI and the course use (pytest-xdist)
test: install
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

lint: install
	$(BIN)/ruff check .

# the documentation site into site/; a broken link or anchor fails it. Its hook (mkdocs.yml) first writes
# docs/reference.md, the configuration reference, from the schema's field descriptions.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
