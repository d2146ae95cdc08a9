# Two commands do everything on a fresh machine:  make demo  /  make test
# Each creates the virtual environment and installs the project on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned to the release this toolkit is tested with (aarch64 gets the CPU build that exists there)
TORCH := $(if $(filter aarch64,$(shell uname -m)),torch==2.9.1 torchvision==0.24.1,torch==2.14.1 torchvision==0.29.1)
# two workers (one per core of the CI machine); each test file stays on one worker so its fixtures build once
PYTEST_ARGS ?= -n 2 --dist loadfile
DEMO_ARGS ?=

.PHONY: demo test install clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# MTCNN face detector (ships its weights, works offline); its metadata pins an old torch, so no deps
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0
	touch $@

install: $(STAMP)

# real models when they can be had (downloaded on first use), otherwise the built-in tiny profile
demo: $(STAMP)
	$(BIN)/styleid demo $(DEMO_ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
