# Two entry points set up everything on a fresh machine:
#   make demo   -> creates .venv, installs srcrn, runs the offline two-stage demo
#   make test   -> creates .venv, installs srcrn with its test extras, lints, type-checks, runs the test suite
# make test-fast: the same without the tests that train models (marker `slow`), for a quick loop.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# pip's own warnings about this machine's local package mirrors are noise, not errors.
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check
CODE   := src tests benchmarks experiments

.PHONY: demo test test-fast lint bench venv clean browser

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[train,test,bench]' 2> $(VENV)/pip-warnings.log || (cat $(VENV)/pip-warnings.log; exit 1)
	touch $@

demo: venv
	$(BIN)/srcrn demo

lint: venv
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/mypy

# The browser test drives Debian's Chromium (Playwright downloads no browser here), the report
# test reads PDFs with poppler (pdftoppm, pdftotext), and the portability test runs the shipped
# model on an emulated CPU without VNNI (qemu-user), the DICOM tests validate what srcrn writes
# with dicom3tools' dciodvfy and store it into a throw-away Orthanc (dcmtk's storescu sends to
# it): installed when missing and we are root; otherwise those tests skip and say why. Orthanc's
# package starts a system service: stopped, the tests start their own on free loopback ports.
SYSTEM_PACKAGES := chromium poppler-utils qemu-user dicom3tools dcmtk orthanc
browser:
	@{ command -v chromium && command -v pdftoppm && command -v qemu-x86_64 && command -v dciodvfy && \
	  command -v storescu && command -v Orthanc; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null 2>&1 && { apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1; }; }; } || \
	  echo "chromium, poppler-utils, qemu-user, dicom3tools, dcmtk or orthanc not installed: some tests will skip"
	@{ command -v service && service orthanc stop; } >/dev/null 2>&1 || true

test: lint browser
	$(BIN)/python -m pytest -q

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

bench: venv
	$(BIN)/python benchmarks/prepare.py
	$(BIN)/python benchmarks/segmentation.py
	$(BIN)/python benchmarks/predict.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
