# Everything runs in a virtual environment of the project's own (VENV), made on first use
# from PYTHON and filled from pyproject.toml: nothing is installed into, or read from, the
# Python you call make with.
#   make demo | make test            the newest packages the ranges allow (PYTHON >= 3.12)
#   make test-oldest                 the lower ends (constraints-oldest.txt), Python 3.11
PYTHON ?= $(shell for p in python3.12 python3.13 python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && { command -v $$p; break; }; done)
VENV ?= .venv
PYTHON_OLDEST ?= python3.11
VENV_OLDEST ?= .venv-oldest
PY = $(VENV)/bin/python
PIP_FLAGS = -q --disable-pip-version-check

# The core the lower-bound run covers: models, methods (Linen, NNX, two functions), boxes,
# metrics, the train step, checkpoints, extraction, the layering, and the PyTorch reference
# tests (torch's CPU wheel is for 3.11).
CORE_TESTS = tests/test_models.py tests/test_cam.py tests/test_saliency.py \
	tests/test_boxes.py tests/test_labeling.py tests/test_metrics.py tests/test_evaluators.py \
	tests/test_train_step.py tests/test_train_reliability.py tests/test_extraction.py \
	tests/test_extract_resume.py tests/test_efficientnet.py tests/test_pretrained_reader.py \
	tests/test_pretrained_torchvision.py tests/test_pretrained_safetensors.py \
	tests/test_nnx_models.py tests/test_any_jax_model.py tests/test_map_contracts.py \
	tests/test_console.py tests/test_packaging.py tests/test_layout.py

.PHONY: install demo test test-fast test-oldest lint bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -U pip
	$(PY) -m pip install $(PIP_FLAGS) -e ".[test,demo,train]"

# The main job: train the default config on the embedded data set, evaluate, extract.
demo: install
	$(PY) -m camjax demo --workdir $${WORKDIR:-runs/demo}

test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup

# The edit-test loop: the suite without the tests marked slow.
test-fast: install
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow"

test-oldest:
	test -x $(VENV_OLDEST)/bin/python || $(PYTHON_OLDEST) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/python -m pip install $(PIP_FLAGS) -c constraints-oldest.txt -e ".[test,demo]"
	$(VENV_OLDEST)/bin/python -m pip freeze | grep -iE '^(jax|jaxlib|flax|numpy|scipy|pytest|torch)==' | tr '\n' ' '; echo
	$(VENV_OLDEST)/bin/python -m pytest -q -n 2 --dist loadgroup -m "not slow" $(CORE_TESTS)

lint: install
	$(PY) -m ruff check camjax tests bench configs *.py
	$(PY) -m ruff format --check camjax tests bench configs *.py
