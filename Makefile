# Two commands do everything on a fresh machine:  make demo  /  make test
# Each creates the virtual environment and installs the project on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# This machine's torch: the release its local wheels stop at (aarch64 gets the CPU build that exists there). The
# package itself does not cap torch (pyproject.toml); users keep theirs.
TORCH := $(if $(filter aarch64,$(shell uname -m)),torch==2.9.1 torchvision==0.24.1,torch==2.14.1 torchvision==0.29.1)
# two workers (one per core of the CI machine); each test file stays on one worker so its fixtures build once
PYTEST_ARGS ?= -n 2 --dist loadfile
DEMO_ARGS ?=

# The ComfyUI version matrix the node pack is tested on (unmodified upstream copies, GPL-3.0, imported by the tests,
# never copied in). The oldest supported one runs in $(VENV) with its own requirements.txt; each newer one gets an
# environment layered over $(VENV): a venv whose .pth adds $(VENV)'s site-packages behind its own, holding only what
# that ComfyUI's requirements.txt needs on top (pip installs the newer pins there and leaves $(VENV)'s alone).
VENDOR ?= $(abspath ../shared/vendor)
COMFYUI_OLDEST ?= $(VENDOR)/ComfyUI
COMFYUI_NEWER ?= $(VENDOR)/ComfyUI-0.33
NEWER_VENV := $(VENV)-$(notdir $(COMFYUI_NEWER))
NEWER_STAMP := $(NEWER_VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# MTCNN face detector (ships its weights, works offline); its metadata pins an old torch, so no deps
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0
	if [ -f $(COMFYUI_OLDEST)/requirements.txt ]; then $(BIN)/python -m pip install -q -r $(COMFYUI_OLDEST)/requirements.txt; fi
	touch $@

$(NEWER_STAMP): $(STAMP)
	if [ -f $(COMFYUI_NEWER)/requirements.txt ]; then \
	  rm -rf $(NEWER_VENV) && $(PYTHON) -m venv $(NEWER_VENV) && \
	  base=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  layer=$$($(NEWER_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  echo "import site; site.addsitedir('$$base')" > $$layer/_styleid_base_venv.pth && \
	  $(NEWER_VENV)/bin/python -m pip install -q -r $(COMFYUI_NEWER)/requirements.txt; \
	fi
	mkdir -p $(NEWER_VENV) && touch $@

install: $(STAMP) $(NEWER_STAMP)

# real models when they can be had (downloaded on first use), otherwise the built-in tiny profile
demo: $(STAMP)
	$(BIN)/styleid demo $(DEMO_ARGS)

# the whole suite (ComfyUI tests on the oldest supported ComfyUI), then the ComfyUI tests on the newer one
test: $(STAMP) $(NEWER_STAMP)
	COMFYUI_ROOT=$(COMFYUI_OLDEST) HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)
	if [ -x $(NEWER_VENV)/bin/python ]; then \
	  COMFYUI_ROOT=$(COMFYUI_NEWER) HF_HUB_OFFLINE=1 $(NEWER_VENV)/bin/python -m pytest $(PYTEST_ARGS) tests/integrations/comfyui/; \
	elif [ -n "$$CI" ]; then echo "CI: no $(COMFYUI_NEWER) to test the node pack on" >&2; exit 1; fi

clean:
	rm -rf $(VENV) $(NEWER_VENV) .pytest_cache test-artifacts
