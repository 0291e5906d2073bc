# Two entry points: `make demo` and `make test`. Each creates .venv when missing and installs into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test venv clean

venv: $(VENV)/.installed

# Reinstall when the package metadata or the C kernel changes (it is compiled at install); the editable install
# picks up Python changes by itself.
$(VENV)/.installed: pyproject.toml setup.py src/audio2image/prepare/_melkernel.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/audio2image run

# One pytest worker per core, each pinned to its own (tests/conftest.py); tests handed out one by one and stolen by
# an idle worker (a few whole sweeps dominate: spread by file, one worker would get several of them).
test: venv
	$(BIN)/python -m pytest -q -n auto --dist worksteal

clean:
	rm -rf runs .cache
