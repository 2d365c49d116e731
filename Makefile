# make report   venv + the quick profile + the site     (PROFILE=smoke|quick|seed|study|...)
# make smoke    the tiny profile end to end, in minutes
# make test     the test suite
# make bench    benchmarks/bench.py (its table feeds the book's compute-cost page)
# make clean    remove outputs and the built site

PYTHON ?= python3
VENV   ?= .venv
PROFILE ?= quick
KERNEL ?=
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUNARGS := --profile $(PROFILE) $(if $(KERNEL),--kernel $(KERNEL),)

.PHONY: report smoke run build test bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

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
