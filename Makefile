# make report   venv + the quick profile + the site     (PROFILE=smoke|quick|seed|study|...)
# make smoke    the tiny profile end to end, in minutes
# make test     the test suite
# make test-fast  the tests not marked slow
# make lint     ruff check (the rules in pyproject.toml)
# make bench    benchmarks/bench.py (its table feeds the book's compute-cost page)
# make clean    remove outputs and the built site
# make lock     regenerate the lock files from pyproject.toml (UPGRADE=1: newest versions)
# EXTRAS=jax    other Keras backends in the venv (EXTRAS=jax, EXTRAS=torch, EXTRAS="jax torch")

PYTHON ?= python3
VENV   ?= .venv
PROFILE ?= quick
KERNEL ?=
EXTRAS ?=
PY     := $(VENV)/bin/python
comma  := ,
empty  :=
space  := $(empty) $(empty)
EXTRA_LIST := $(sort $(subst $(comma), ,$(EXTRAS)))
STAMP  := $(VENV)/.installed$(if $(EXTRA_LIST),-$(subst $(space),-,$(EXTRA_LIST)),)
BASE_LOCK := requirements/lock.txt
LOCKS  := $(if $(EXTRA_LIST),$(foreach e,$(EXTRA_LIST),requirements/lock-$(e).txt),$(BASE_LOCK))
# Where pip finds torch 2.13.0+cpu, the CPU build lock-torch.txt pins: these machines carry it
# in a local wheel folder pip already searches; elsewhere, PyTorch's CPU index.
TORCH_INDEX ?=
UV_VERSION ?= 0.13.8
TORCH_WHEELS ?= /opt/wheels
LOCK_FLAGS = --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
             $(if $(UPGRADE),--upgrade,)
RUNARGS := --profile $(PROFILE) $(if $(KERNEL),--kernel $(KERNEL),)

.PHONY: report smoke run build test test-fast lint bench clean venv lock

venv: $(STAMP)

# Every dependency (and the test extra) at the locked version, each file checked against its
# hash; then the project itself, editable, without resolving anything again. EXTRAS=jax
# installs the lock with JAX, EXTRAS=torch the lock with PyTorch's CPU build (torch
# 2.13.0+cpu; TORCH_INDEX=https://download.pytorch.org/whl/cpu where no local copy lies), and
# both together install both locks, which pin the same versions of everything they share.
$(STAMP): pyproject.toml $(LOCKS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes $(foreach l,$(LOCKS),-r $(l)) \
	    $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The locks, resolved for CPython 3.11 on Linux x86_64 (glibc 2.28+), with the SHA-256 of
# every file PyPI has for each pinned version; versions already in a lock are kept unless
# UPGRADE=1. lock.txt: pyproject.toml's dependencies plus the test extra. lock-jax.txt and
# lock-torch.txt: the same plus the jax (torch) extra, constrained to lock.txt's versions, so
# each differs from it by one backend; torch is resolved from TORCH_WHEELS, where its CPU build
# lies (PyPI's Linux wheel of torch 2.13.0 is the CUDA build, several GB). By hand:
#   uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
#       --python-platform x86_64-manylinux_2_28 --output-file requirements/lock.txt
#   uv pip compile pyproject.toml --extra test --extra jax --constraint requirements/lock.txt \
#       --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
#       --output-file requirements/lock-jax.txt
#   (lock-torch.txt: --extra torch --find-links $(TORCH_WHEELS), the rest as lock-jax.txt)
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra test $(LOCK_FLAGS) \
	    --output-file $(BASE_LOCK)
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra test --extra jax \
	    --constraint $(BASE_LOCK) $(LOCK_FLAGS) --output-file requirements/lock-jax.txt
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra test --extra torch \
	    --constraint $(BASE_LOCK) $(LOCK_FLAGS) --find-links $(TORCH_WHEELS) \
	    --output-file requirements/lock-torch.txt

report: $(STAMP)
	$(PY) -m vgg_transfer report $(RUNARGS)

smoke:
	$(MAKE) report PROFILE=smoke

run: $(STAMP)
	$(PY) -m vgg_transfer run $(RUNARGS)

build: $(STAMP)
	$(PY) -m vgg_transfer build $(RUNARGS)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench.py $(if $(CIFAR10_DIR),--data-dir $(CIFAR10_DIR),)

clean:
	$(PY) -m vgg_transfer clean
