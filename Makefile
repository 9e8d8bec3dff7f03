# Two entry points: `make train` (the main job) and `make test`. Each creates/updates .venv by itself.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# a CPU build of torch: this pin is on the machine's disk; an unpinned torch pulls several GB of CUDA wheels
TORCH  ?= torch==2.13.0
EXTRAS ?= train,data,dev,export,docs

.PHONY: setup train test docs clean

$(PY):
	python3 -m venv $(VENV)

setup: $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	@$(PY) -m pip install -q -e ".[$(EXTRAS)]"

train: setup
	$(PY) -m statespaces train

test: setup
	$(PY) -m pytest -q -n 2 tests

docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) site build *.egg-info src/*.egg-info .pytest_cache
