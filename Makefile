# vocproj: `make test` and `make report` on a fresh machine; each creates .venv on first use.
PROFILE ?= sample
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: test lint lab clean

# The venv is (re)installed only when pyproject.toml changed since the last install.
$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

test: $(INSTALLED) lint
	$(BIN)/python -m pytest --durations=20

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# `make lab [LAB_PORT=8888]`: JupyterLab on 127.0.0.1 only, without opening a browser. Jupyter
# refuses to start as root (containers) unless given --allow-root, so it gets that only then.
LAB_PORT ?= 8888
lab: $(INSTALLED)
	$(BIN)/jupyter lab notebooks/ --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		--no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf runs/

# `make bench`: training and evaluation images/second of vocproj beside the study's
# straightforward pipeline, on VOC-sized synthetic JPEGs at 224 px, and prediction with PyTorch
# beside ONNX Runtime on real photos; prints tables and writes reports/bench.json (about 16
# minutes on 2 CPU cores). Not part of `make test`.
.PHONY: bench
bench: $(INSTALLED)
	PYTHONPATH=$(CURDIR) $(BIN)/python benchmarks/bench.py

# ---------------------------------------------------------------- make report
# `make report [PROFILE=sample] [NPROC=1]`: the data, the notebooks in order with papermill, then
# reports/$(PROFILE)/REPORT.md. Each stage is a file that make compares with what the stage
# reads (its notebook, params/$(PROFILE).yaml, the previous stage's output), so a rerun redoes
# only what changed, and an interrupted stage is redone (training resumes from its last epoch).
# The paths assume the profile keeps the default runs_dir and reports_dir.
# `make report NPROC=N` trains each phase in N processes on this machine with torchrun (DDP:
# nccl between GPUs, gloo between CPU processes); the profile's batch size stays the global batch.
NPROC ?= 1
PARAMS := params/$(PROFILE).yaml
RUN_DIR := runs/$(PROFILE)
REPORT_DIR := reports/$(PROFILE)
EXECUTED := $(REPORT_DIR)/notebooks
# The first stage's stamp lives in the git-ignored runs/: after a fresh clone or `make clean`
# every stage runs again, even where executed notebooks are committed.
DATA_READY := $(RUN_DIR)/data.ready
STAGES := 00_data_exploration 01_phase1_train 02_phase2_rotation 03_phase3_colour_flip \
	04_evaluation $(if $(wildcard notebooks/05_browser.ipynb),05_browser)
# Notebooks and CLI import this checkout's vocproj, even from a venv installed from another one.
THIS_CHECKOUT := PYTHONPATH=$(CURDIR)
PAPERMILL := $(THIS_CHECKOUT) $(BIN)/papermill --kernel python3 --cwd notebooks \
	--parameters_file $(PARAMS)
STARTED := $(shell date +%s)

.PHONY: report
report: $(REPORT_DIR)/REPORT.md
	@echo "make report PROFILE=$(PROFILE): done in $$(( $$(date +%s) - $(STARTED) )) s; see $<"

$(REPORT_DIR)/REPORT.md: $(STAGES:%=$(EXECUTED)/%.ipynb) vocproj/reporting/report.py
	$(THIS_CHECKOUT) $(BIN)/python -m vocproj report --profile $(PROFILE)

$(DATA_READY): $(PARAMS) | $(INSTALLED)
	$(THIS_CHECKOUT) $(BIN)/python -m vocproj data --profile $(PROFILE)
	@mkdir -p $(@D) && touch $@

# What each stage reads; 01 also waits for 00 (order only), so the notebooks run in order.
$(EXECUTED)/00_data_exploration.ipynb: $(DATA_READY)
$(EXECUTED)/01_phase1_train.ipynb: $(DATA_READY) | $(EXECUTED)/00_data_exploration.ipynb
$(EXECUTED)/02_phase2_rotation.ipynb: $(EXECUTED)/01_phase1_train.ipynb
$(EXECUTED)/03_phase3_colour_flip.ipynb: $(EXECUTED)/02_phase2_rotation.ipynb
$(EXECUTED)/04_evaluation.ipynb: $(EXECUTED)/03_phase3_colour_flip.ipynb
$(EXECUTED)/05_browser.ipynb: $(EXECUTED)/04_evaluation.ipynb
# The training notebooks get `nproc` (private: not passed on to the stages they wait for).
$(EXECUTED)/01_phase1_train.ipynb $(EXECUTED)/02_phase2_rotation.ipynb \
	$(EXECUTED)/03_phase3_colour_flip.ipynb: private TRAIN_PARAMETERS := -p nproc $(NPROC)

# A notebook runs into runs/<profile>/notebooks/ and moves into reports/ once every cell ran:
# an interrupted or failed stage leaves no executed notebook in reports/, so it is redone.
$(EXECUTED)/%.ipynb: notebooks/%.ipynb $(PARAMS) | $(INSTALLED)
	@mkdir -p $(RUN_DIR)/notebooks $(@D)
	$(PAPERMILL) $(TRAIN_PARAMETERS) $< $(RUN_DIR)/notebooks/$*.ipynb
	mv $(RUN_DIR)/notebooks/$*.ipynb $@

params/%.yaml:
	@echo "error: $@ not found: PROFILE=<name> needs params/<name>.yaml" >&2; exit 1

# ---------------------------------------------------------------- make browse
# `make browse [PROFILE=sample] [BROWSE_PORT=8866]`: the browser (notebook 05) as a standalone page served by
# Voilà. papermill only writes the profile's parameters into a copy; Voilà runs that copy.
# It reads what `make report` wrote: the best checkpoint, metrics.json and top50.json.
.PHONY: browse
BROWSE_PORT ?= 8866
browse: $(PARAMS) | $(INSTALLED)
	@mkdir -p $(RUN_DIR)
	$(THIS_CHECKOUT) $(BIN)/papermill --prepare-only --parameters_file $(PARAMS) \
		notebooks/05_browser.ipynb $(RUN_DIR)/05_browser.ipynb
	$(THIS_CHECKOUT) $(BIN)/voila $(RUN_DIR)/05_browser.ipynb --Voila.ip=127.0.0.1 \
		--port=$(BROWSE_PORT) --no-browser
