# make report   venv + the quick profile + the site     (PROFILE=smoke|quick|seed|study|...)
# make smoke    the tiny profile end to end, in minutes
# make test     the test suite
# make bench    benchmarks/bench.py (its table feeds the book's compute-cost page)
# make clean    remove outputs and the built site
# make lock     regenerate the lock files from pyproject.toml (UPGRADE=1: newest versions)
# EXTRAS=jax    another Keras backend in the venv (make venv EXTRAS=jax; or EXTRAS=torch)

PYTHON ?= python3
VENV   ?= .venv
PROFILE ?= quick
KERNEL ?=
EXTRAS ?=
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed$(if $(EXTRAS),-$(EXTRAS),)
BASE_LOCK := requirements/lock.txt
JAX_LOCK  := requirements/lock-jax.txt
LOCK   := $(if $(filter jax,$(EXTRAS)),$(JAX_LOCK),$(BASE_LOCK))
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
UV_VERSION ?= 0.13.8
LOCK_FLAGS = --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
             $(if $(UPGRADE),--upgrade,)
RUNARGS := --profile $(PROFILE) $(if $(KERNEL),--kernel $(KERNEL),)

.PHONY: report smoke run build test bench clean venv lock

venv: $(STAMP)

# Every dependency (and the test extra) at the locked version, each file checked against its
# hash; then the project itself, editable, without resolving anything again. EXTRAS=jax
# installs the lock with JAX; EXTRAS=torch adds PyTorch's CPU build from its own index,
# unlocked (PyPI's Linux wheel pulls in the CUDA libraries, several GB; see the README).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(if $(filter torch,$(EXTRAS)),$(PY) -m pip install --quiet "torch>=2.4" \
	    --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple,)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The locks, resolved for CPython 3.11 on Linux x86_64 (glibc 2.28+), with the SHA-256 of
# every file PyPI has for each pinned version; versions already in a lock are kept unless
# UPGRADE=1. lock.txt: pyproject.toml's dependencies plus the test extra. lock-jax.txt: the
# same plus the jax extra, constrained to lock.txt's versions, so the two differ by JAX
# alone. By hand, from the project root:
#   uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
#       --python-platform x86_64-manylinux_2_28 --output-file requirements/lock.txt
#   uv pip compile pyproject.toml --extra test --extra jax --constraint requirements/lock.txt \
#       --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
#       --output-file requirements/lock-jax.txt
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra test $(LOCK_FLAGS) \
	    --output-file $(BASE_LOCK)
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra test --extra jax \
	    --constraint $(BASE_LOCK) $(LOCK_FLAGS) --output-file $(JAX_LOCK)

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

bench: $(STAMP)
	$(PY) benchmarks/bench.py $(if $(CIFAR10_DIR),--data-dir $(CIFAR10_DIR),)

clean:
	$(PY) -m vgg_transfer clean
