# MedGo on Ray — developer entry points. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pins the CPU build of torch so a CPU machine never pulls a multi-GB CUDA wheel.
# GPU clusters: make install CONSTRAINTS=/dev/null, then pip install flash-attn (README).
CONSTRAINTS ?= constraints-cpu.txt
EXTRAS ?=
PIP_ARGS ?=
comma := ,
STAMP := $(VENV)/.installed$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))

.PHONY: install quickstart test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install $(PIP_ARGS) -c $(CONSTRAINTS) -e ".$(if $(EXTRAS),[$(EXTRAS)])"
	touch $@

install: $(STAMP)

quickstart:
	$(MAKE) install
	$(PY) -m medgo.quickstart

test:
	$(MAKE) install EXTRAS=test
	$(PY) -m pytest -q

bench:
	$(MAKE) install EXTRAS=test
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
