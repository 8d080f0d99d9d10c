# MedGo on Ray — developer entry points. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every dependency, direct and transitive, pinned for CPython 3.11 on Linux x86_64 (make lock).
# The CPU lock pins torch's CPU build, so a CPU machine never pulls a multi-GB CUDA wheel; pip
# finds it through its find-links or PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
# GPU nodes: make install-gpu (CUDA torch from PyPI, then flash-attn; README).
LOCK ?= locks/cpu.txt
EXTRAS ?=
PIP_ARGS ?=
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
FLASH_ATTN_VERSION := 2.8.3.post2
LOCK_PYTHON := 3.11
LOCK_PLATFORM := x86_64-manylinux_2_28
LOCK_EXTRAS := --extra test
# uv does not read pip's configuration: it gets pip's find-links (a folder holding the CPU torch
# wheel), or else PyTorch's CPU index.
PIP_FIND_LINKS ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
TORCH_CPU_SOURCE ?= $(if $(strip $(PIP_FIND_LINKS)),--find-links $(PIP_FIND_LINKS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
comma := ,
STAMP := $(VENV)/.installed-$(notdir $(basename $(LOCK)))$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))

.PHONY: install install-gpu lock quickstart test bench clean

$(PY):
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; v == "$(LOCK_PYTHON)" or sys.exit(f"$(LOCK) is locked for Python $(LOCK_PYTHON) and $(PYTHON) is {v}: use PYTHON=python$(LOCK_PYTHON), or make lock LOCK_PYTHON={v}")'
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet pip==$(PIP_VERSION) > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }

# pip's output goes to $(VENV)/install.log; on failure its end is shown.
$(STAMP): pyproject.toml $(LOCK) | $(PY)
	@echo "installing from $(LOCK) into $(VENV)$(if $(EXTRAS), with [$(EXTRAS)]) (log: $(VENV)/install.log)"
	@$(PY) -m pip install $(PIP_ARGS) -c $(LOCK) -e ".$(if $(EXTRAS),[$(EXTRAS)])" > $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; exit 1; }
	@$(PY) -m pip check >> $(VENV)/install.log || { tail -n 5 $(VENV)/install.log; exit 1; }
	@touch $@

install: $(STAMP)

# CUDA torch and its nvidia-* wheels from PyPI, then FlashAttention-2 built against them.
install-gpu:
	@$(MAKE) -s --no-print-directory install LOCK=locks/gpu.txt
	$(PY) -m pip install $(PIP_ARGS) -c locks/gpu.txt --no-build-isolation flash-attn==$(FLASH_ATTN_VERSION)

# Re-resolve both locks after a change to pyproject.toml's dependencies (or to upgrade: delete
# a lock first, or pass LOCK_UPGRADE=--upgrade); commit the changed files under locks/.
lock: | $(PY)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_EXTRAS) $(LOCK_UPGRADE) --quiet --python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
		--custom-compile-command "make lock" -c locks/torch-cpu.in $(TORCH_CPU_SOURCE) -o locks/cpu.txt
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_EXTRAS) $(LOCK_UPGRADE) --quiet --python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
		--custom-compile-command "make lock" -c locks/torch-gpu.in -o locks/gpu.txt

quickstart:
	@$(MAKE) -s --no-print-directory install
	@$(PY) -m medgo.quickstart

test:
	@$(MAKE) -s --no-print-directory install EXTRAS=test
	$(PY) -m pytest -q

bench:
	@$(MAKE) -s --no-print-directory install EXTRAS=test
	for b in $(filter-out benchmarks/flywheel_promote.py,$(wildcard benchmarks/*.py)); do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
