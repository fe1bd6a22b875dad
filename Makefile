# make test: create .venv if missing, install the project with its test extra, run pytest.
# make demo: the main job end to end (download -> convert -> bench smoke profile -> report) on MIT-BIH.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MIRROR ?= $(ECGTRANSFER_PHYSIONET_MIRROR)
DEMO_DIR ?= demo-out

.PHONY: test demo install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	bash benchmarks/demo.sh "$(DEMO_DIR)"

clean:
	rm -rf $(VENV) $(DEMO_DIR)
