# Two commands do everything on a fresh machine (see README.md):
#   make demo   -- set up, then run the built-in end-to-end EKD experiment
#   make test   -- set up, then run the test suite
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null)

.PHONY: setup test demo clean

$(VENV)/.installed: setup.cfg pyproject.toml
	@if [ -z "$(UV)" ]; then $(PY) -m pip install -q uv; fi
	@if [ ! -x $(VPY) ]; then $(PY) -m uv venv -q $(VENV) --python $(PY); fi
	$(PY) -m uv pip install -q --python $(VPY) -e '.[fairseq,test]'
	@touch $@

setup: $(VENV)/.installed

test: setup
	$(VPY) -m pytest -q tests

demo: setup
	$(VPY) -m s3prl_ekd.cli demo

clean:
	rm -rf $(VENV) result results cache
