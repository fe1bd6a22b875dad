# make test: create .venv if missing, install the project with its test extra, run pytest.
# make demo: the main job: beat classifiers on unseen patients (download mitdb + svdb -> convert -> combine -> train
#            resnet50 / cnn1d / features -> the de Chazal table on held-out patients -> a beat report).
# make smoke: the transfer pipeline end to end on the smoke profile (a pipeline check).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MIRROR ?= $(ECGTRANSFER_PHYSIONET_MIRROR)
DEMO_DIR ?= demo-out
SMOKE_DIR ?= smoke-out

.PHONY: test demo smoke install clean

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

smoke: install
	bash benchmarks/smoke.sh "$(SMOKE_DIR)"

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(SMOKE_DIR)
