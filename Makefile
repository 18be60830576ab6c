# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/cnnrun train configs/quickstart.yaml

# two test processes: the 2-core machines CI and the course use (pytest-xdist)
test: install
	$(BIN)/python -m pytest -q -n 2

lint: install
	$(BIN)/ruff check .

# the documentation site into site/; a broken link or anchor fails it. Its hook (mkdocs.yml) first writes
# docs/reference.md, the configuration reference, from the schema's field descriptions.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
