# make report   venv + the quick profile + the site     (PROFILE=smoke|quick|seed|study|...)
# make smoke    the tiny profile end to end, in minutes
# make test     the test suite
# make bench    benchmarks/bench.py (its table feeds the book's compute-cost page)
# make clean    remove outputs and the built site
# make lock     regenerate requirements/lock.txt from pyproject.toml (UPGRADE=1: newest versions)

PYTHON ?= python3
VENV   ?= .venv
PROFILE ?= quick
KERNEL ?=
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := requirements/lock.txt
UV_VERSION ?= 0.13.8
RUNARGS := --profile $(PROFILE) $(if $(KERNEL),--kernel $(KERNEL),)

.PHONY: report smoke run build test bench clean venv lock

venv: $(STAMP)

# Every dependency (and the test extra) at the locked version, each file checked against its
# hash; then the project itself, editable, without resolving anything again.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The lock: pyproject.toml's dependencies plus the test extra, resolved for CPython 3.11 on
# Linux x86_64 (glibc 2.28+), with the SHA-256 of every file PyPI has for each pinned version.
# Versions already in the lock are kept unless UPGRADE=1. By hand, from the project root:
#   uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
#       --python-platform x86_64-manylinux_2_28 --output-file requirements/lock.txt
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra test --generate-hashes \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    $(if $(UPGRADE),--upgrade,) --output-file $(LOCK)

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
