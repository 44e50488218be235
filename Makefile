# make test      set up .venv (first time) and run the unit tests and every notebook at the smoke profile
# make figures   run every notebook through papermill (PROFILE=smoke|cpu|paper, default cpu), then the README;
#                at cpu the executed notebooks are also kept, cleaned, under executed/;
#                CIFAR10=cifar10-jpeg runs notebooks 02 and 10 on the JPEG-folder copy of CIFAR-10
# make dryrun    the paper-profile dry runs: one step of every paper-size configuration of every notebook
# make bench     time Bprop / DNI / cDNI training steps (DEVICE=cpu|cuda|auto), the cost of per-step host reads, the Copy loop,
#                and grouped feed-forward, Copy, language-model and two-timescale runs against runs one after another
# make readme    regenerate README.md's generated tables and results/README.md from results/ and notebooks/
# make exercises generate each course exercise notebook from its solution (notebooks/course/)
# make lab       open JupyterLab on the notebooks with the project's kernel

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PROFILE ?= cpu
DEVICE ?= auto
TEST_WORKERS ?= 2
CIFAR10 ?=
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
COURSE := $(sort $(wildcard notebooks/course/*_solution.ipynb))
SMOKE := build/smoke
EXECUTED := executed
export PYTHONHASHSEED := 0

.PHONY: test dryrun figures bench readme exercises lab clean venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (dni)" >/dev/null
	touch $@

# Unit tests, then each notebook prepared at the smoke profile (papermill --prepare-only injects the
# parameters) and executed and checked by nbval, and the course solutions (small already) as they
# are; warnings are errors in both. pytest-xdist spreads them over TEST_WORKERS processes, a test
# module or a notebook to a process (loadscope: nbval runs a notebook's cells in order in one
# kernel, and a module's fixtures are built once); the notebooks, the longest scopes, are handed out
# first so that neither worker is left with one at the end; the 15 slowest are listed at the end.
# One thread per worker (OMP_NUM_THREADS=1, which kernels and spawned processes inherit): two workers
# of two threads each on two cores make torch's thread pools wait on each other, and a small
# network's step then takes several times as long (the course solution: 105 s against 17 s).
test: venv
	rm -rf $(SMOKE) && mkdir -p $(SMOKE)
	for nb in $(NOTEBOOKS); do \
	  $(VENV)/bin/papermill --prepare-only --log-level WARNING "$$nb" "$(SMOKE)/$$(basename $$nb)" \
	    -p profile smoke -p progress False \
	    -p results_dir "$(CURDIR)/$(SMOKE)/results" -p figures_dir "$(CURDIR)/$(SMOKE)/figures" || exit 1; \
	done
	OMP_NUM_THREADS=1 PYTHONWARNINGS=error MPLBACKEND=Agg $(PY) -m pytest $(SMOKE) $(COURSE) tests --nbval-lax -p no:cacheprovider -m "not slow" \
	  -n $(TEST_WORKERS) --dist loadscope --durations=15

# The paper-profile dry runs (tests/test_paper_dry_run.py): one training step of every paper-size
# configuration of every notebook, offline on stand-in data; minutes on a CPU, so not in make test.
dryrun: venv
	PYTHONWARNINGS=error MPLBACKEND=Agg $(PY) -m pytest tests/test_paper_dry_run.py -p no:cacheprovider -m slow

# A notebook that fails (e.g. its data cannot be found offline) writes nothing; the others still
# run, the README is regenerated from what exists, and the failures are listed at the end.
# At cpu each executed notebook that ran through is also cleaned of what changes from run to run
# (python -m dni_utils.tools.executed) into executed/, which is committed; smoke and paper keep theirs in build/.
figures: venv
	@mkdir -p build/$(PROFILE)
	@failed=""; for nb in $(NOTEBOOKS); do \
	  out="build/$(PROFILE)/$$(basename $$nb)"; \
	  extra=""; case "$$nb" in *02_ff_cifar10*) [ -z "$(CIFAR10)" ] || extra="-p dataset $(CIFAR10)";; \
	    *10_ff_budget*) [ -z "$(CIFAR10)" ] || extra="-p cifar10_dataset $(CIFAR10)";; esac; \
	  echo "== $$nb (profile $(PROFILE)) $$extra"; \
	  if $(VENV)/bin/papermill "$$nb" "$$out" --cwd notebooks -p profile $(PROFILE) $$extra; then \
	    if [ "$(PROFILE)" = cpu ]; then $(PY) -m dni_utils.tools.executed "$$out" --out-dir $(EXECUTED) --timings results/timings/cpu.json || failed="$$failed $$nb"; fi; \
	  else failed="$$failed $$nb"; fi; \
	done; \
	$(PY) -m dni_utils.tools.readme; \
	if [ -n "$$failed" ]; then echo "failed:$$failed (see build/$(PROFILE)/)"; exit 1; fi

bench: venv
	$(PY) -m dni_utils.tools.bench --device $(DEVICE)
	$(PY) -m dni_utils.tools.copybench --device $(DEVICE)
	$(PY) -m dni_utils.tools.groupbench --device $(DEVICE)

readme: venv
	$(PY) -m dni_utils.tools.readme

# The exercise version of each course notebook, generated from its solution (never edited by hand).
exercises: venv
	for nb in $(COURSE); do $(PY) -m dni_utils.tools.exercises "$$nb" || exit 1; done

lab: venv
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf build
