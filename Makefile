# raycond: one-command set-up, tests and demo.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
GUI_APT := xvfb libgl1-mesa-dri libglx-mesa0 libegl1 xauth xdotool

# check-cuda: a separate venv with the CUDA build of PyTorch (several GB; created once, kept
# outside the repository) to compile the kernels with nvcc without a GPU.
CUDA_VENV  ?= $(HOME)/.cache/raycond/venv-cuda
CUDA_TORCH ?= torch==2.14.1
NVCC       ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)

.PHONY: help install test test-fast gui-deps demo bench clean check-cuda

help:
	@echo "make demo      open the visualizer on the bundled checkpoint (creates .venv)"
	@echo "make test      create .venv, install raycond with test extras, run the test suite"
	@echo "make install   create .venv and install raycond (editable) with $(TORCH)"
	@echo "make gui-deps  install Xvfb + Mesa (Debian/Ubuntu, as root) for headless GUI tests"
	@echo "make bench     run the generator benchmark"
	@echo "make check-cuda compile the CUDA kernels with nvcc for sm_80/sm_90 (no GPU needed)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[test]" "$(TORCH)"
	touch $@

install: $(VENV)/.installed

# Xvfb + Mesa for the GUI tests: installed when we are root on Debian/Ubuntu and they are missing;
# otherwise the GUI tests skip with a reason.
gui-deps:
	@if command -v Xvfb >/dev/null 2>&1 && command -v xdotool >/dev/null 2>&1; then echo "gui-deps: Xvfb and xdotool found"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "gui-deps: installing $(GUI_APT)"; \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(GUI_APT) >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(GUI_APT) >/dev/null)) \
	  || echo "gui-deps: could not install Xvfb; GUI tests will be skipped"; \
	else echo "gui-deps: Xvfb missing and not root: GUI tests will be skipped (apt-get install $(GUI_APT))"; fi

test: install gui-deps
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow and not gui" tests

# Opens the visualizer on the bundled checkpoint; without a display, explains and writes a PNG.
demo: install
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(PY) visualizer.py; else \
	  echo "make demo: no display found (DISPLAY/WAYLAND_DISPLAY unset)."; \
	  echo "  On a desktop, run 'make demo' there; on a server, 'xvfb-run make demo' or ssh -X."; \
	  echo "  Rendering one frame headless instead:"; \
	  $(PY) visualizer.py --headless --capture=demo.png --yaw=20 && echo "  wrote demo.png"; fi

$(CUDA_VENV)/.installed:
	test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install -q "$(CUDA_TORCH)"
	touch $@

check-cuda:
	@if [ -z "$(NVCC)" ]; then echo "check-cuda: nvcc not found; install the CUDA toolkit or set NVCC"; exit 1; fi
	$(MAKE) $(CUDA_VENV)/.installed
	$(CUDA_VENV)/bin/python .ci/check_cuda.py

bench: install
	$(PY) benchmarks/bench_generator.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
