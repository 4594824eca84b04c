PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q --disable-pip-version-check

.PHONY: install demo test lint bench

install:
	$(PIP) -e ".[test,demo,train]"

# The main job: train the default config on the embedded data set, evaluate, extract.
demo: install
	$(PYTHON) -m camjax.demo --workdir $${WORKDIR:-runs/demo}

test: install
	$(PYTHON) -m pytest -q -n 2 --dist loadgroup

lint:
	$(PYTHON) -m ruff check camjax tests bench configs *.py
	$(PYTHON) -m ruff format --check camjax tests bench configs *.py
