# Two commands for a new user (README quick start): `make demo` and `make test`.
# Both build .venv from the package registries alone; run as root on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Versions checked together: torch 2.13.0 CPU wheel + triton 3.6.0 interpreter (docs/REFERENCE.md section 3).
TORCH_PIN ?= torch==2.13.0
TRITON_PIN ?= triton==3.6.0
PYTEST_ARGS ?=
# The test cluster's MaxArraySize: small, so the launcher's 8-run test sweep really goes out as 2 arrays (5 + 3).
SLURM_MAX_ARRAY_SIZE ?= 5

.PHONY: demo test setup test-setup gpu-test slurm-up slurm-down clean

setup: $(VENV)/.installed

# A venv sees an existing torch (a CUDA build on a GPU node) through --system-site-packages; only where no torch is
# importable do we install the pinned CPU wheel, so nothing pulls the multi-GB CUDA stack by accident.
$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null)
	@# rsync: SLURM jobs run an rsync'd snapshot of the code as launched (sweeps/snapshot.py)
	@command -v rsync >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null)
	@if python3 -c 'import torch' 2>/dev/null; then \
	  echo "[setup] keeping the torch already installed: $$(python3 -c 'import torch; print(torch.__version__)')"; \
	  python3 -m venv --system-site-packages $(VENV); \
	else python3 -m venv $(VENV); fi
	$(PIP) install -q --upgrade pip
	@$(PY) -c 'import torch' 2>/dev/null || $(PIP) install -q "$(TORCH_PIN)"
	@# triton has Linux wheels only (pyproject's marker skips it elsewhere)
	@[ "$$(uname -s)" != Linux ] || $(PY) -c 'import triton' 2>/dev/null || $(PIP) install -q "$(TRITON_PIN)"
	$(PIP) install -q -e '.[train]'
	@touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'   # test pulls in train and tracking (TensorBoard, wandb)
	@touch $@

test-setup: $(VENV)/.test-installed

demo: setup
	$(VENV)/bin/simplex-scaling run sweeps/demo.yaml --fit --report

# The whole suite, SLURM tests included: bring up the loopback SLURM cluster, run everything, take it down.
test: test-setup
	@set -o pipefail; status=0; \
	if [ -x scripts/local_slurm.sh ]; then SLURM_MAX_ARRAY_SIZE=$(SLURM_MAX_ARRAY_SIZE) scripts/local_slurm.sh up || { echo "[test] local SLURM failed to start"; exit 1; }; fi; \
	$(PY) -m pytest -q -rs $(PYTEST_ARGS) || status=$$?; \
	if [ -x scripts/local_slurm.sh ]; then scripts/local_slurm.sh down || true; fi; \
	exit $$status

# GPU-marked tests, for the device machine (CI has no GPU).
gpu-test:
	python3 -m pytest -q -rs -m gpu tests

slurm-up:
	SLURM_MAX_ARRAY_SIZE=$(SLURM_MAX_ARRAY_SIZE) scripts/local_slurm.sh up
slurm-down:
	scripts/local_slurm.sh down

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
