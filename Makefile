# Two commands for a newcomer: `make run` builds every lesson, `make test` checks the project.
PYTHON ?= python3.11
VENV ?= .venv
PROFILE ?=
BIN := $(VENV)/bin
# Every recipe runs in the project's environment, whatever the caller's PATH holds: the stages that
# DVC starts run `python`, which has to be the one in .venv.
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: install run test test-all test-slow bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch's CUDA wheels are large: a flaky connection resumes a broken download instead of failing the install
$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/python -m pip install --quiet --resume-retries 20 -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Build every lesson: `make run` uses params.yaml as it is; `make run PROFILE=full` switches every
# dataset to the real data for this run (an experiment, listed by `dvc exp show`).
run: install
	$(if $(PROFILE),$(BIN)/lessonflow dvc-yaml --profile $(PROFILE) && )$(BIN)/dvc $(if $(PROFILE),exp run -S profile=$(PROFILE),repro) $(ARGS)
	@echo "Next, in this shell: source .venv/bin/activate, then dvc metrics show, dvc plots show, lessonflow compare"

# The contributor's tier (minutes): every unit test, the docs test and one real `dvc repro` slice, on
# one worker per core (at most 4); a file's tests run in order in one worker (the docs test needs it),
# and the files in the order tests/conftest.py gives them (xdist would sort them by their number of tests).
test: install
	$(BIN)/python -m pytest -m "not slow and not long" -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Everything CI runs: the above plus the long end-to-end, reliability, schedule and flow tests, on the
# same workers; the default build they read is made once, by whichever worker needs it first.
test-all: install
	$(BIN)/python -m pytest -m "not slow" -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The real-data checks (needs LESSONFLOW_DATA_MIRROR or internet): minutes of training per lesson.
test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The speed benchmarks on the real MNIST (the offline mirror: LESSONFLOW_DATA_MIRROR, default ../shared/data):
# lessonflow against the tutorials' own loops, and the pipeline against DVC's own floor (`ARGS="--only overhead"`:
# that part alone, no mirror needed); writes benchmarks/results/*.json and prints the tables.
bench: install
	$(BIN)/python benchmarks/bench.py $(ARGS)

clean:
	rm -rf data/raw data/prepared models results reports .dvc/tmp
