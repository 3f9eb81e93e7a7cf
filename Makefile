# Quick start: `make demo` (run the notebook series) and `make test` (unit tests + strict nbval).
# Both create .venv and install cxrnb with its extras on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cxrnb-installed
OUT    ?= outputs
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
export TF_CPP_MIN_LOG_LEVEL := 3
# kernel config: TensorFlow's C++ logs go to this terminal, not into notebook cells
export IPYTHONDIR := $(CURDIR)/.ipython

.PHONY: demo test test-onednn-off lab bench lessons wheel release-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(OUT)/notebooks
	for nb in $(NOTEBOOKS); do \
	  echo "executing $$nb"; \
	  $(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1200 \
	    --output-dir $(OUT)/notebooks "$$nb" || exit 1; \
	done
	@echo "Executed notebooks: $(OUT)/notebooks/  figures: $(OUT)/figures/  data and CSVs: $(OUT)/"

# Two pytest-xdist workers: the notebooks run in order on one (conftest.py groups them), the unit
# tests on the other while the notebooks wait on one thread (kernel start, data, bootstraps).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope tests notebooks --nbval \
	  --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=1200

# The lessons' verdicts must not depend on the CPU's kernels: strict nbval of the training
# notebooks again with oneDNN off (another machine's arithmetic). .ci/run runs it after `make test`.
TRAINING_NOTEBOOKS := $(filter notebooks/03% notebooks/04% notebooks/05%,$(NOTEBOOKS))
test-onednn-off: $(STAMP)
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/python -m pytest $(TRAINING_NOTEBOOKS) --nbval \
	  --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=1200

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/augment.py
	$(BIN)/python benchmarks/evaluate.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/efficiency.py
	$(BIN)/python benchmarks/growth.py

# Every lesson's effect under seeds 0-4 x oneDNN on/off (about an hour on 2 cores) -> docs/lessons.md
lessons: $(STAMP)
	$(BIN)/python benchmarks/lessons.py all

# A wheel for instructors who host cxrnb themselves (Colab: set CXRNB_INSTALL to its URL).
wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps --quiet -w dist .
	@ls dist/*.whl

# Before an upload (docs/release.md): build the wheel and the sdist afresh, check both with twine.
release-check: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(OUT) .pytest_cache dist
