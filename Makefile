# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use (Python 3.11 -> ansible-core 2.19) and install what
# they need from tests/requirements.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COLL_LINK := build/collections/ansible_collections/encedo/hem
SANITY_DIR := build/sanity/ansible_collections/encedo/hem
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: all venv link test sanity integration lint pytest unit demo bench clean

all: test

$(STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r tests/requirements.txt
	touch $@

venv: $(STAMP)

# The collection is used in place through a link, so edits are live.
link:
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn $(CURDIR) $(COLL_LINK)

# ansible-test needs the collection under ansible_collections/<ns>/<name>: copy the
# files git knows about (tracked or new, not ignored) there. It runs in its own venv
# (.venv-sanity) with --requirements, so its pinned linters never clash with ours.
# ansible-test bootstraps pip in its venvs with a script it downloads; this machine
# reaches only the package registries, so tests/sanity/get_pip_offline.py stands in.
SANITY_VENV := .venv-sanity
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache

$(SANITY_VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install --quiet --upgrade pip
	$(SANITY_VENV)/bin/pip install --quiet "$$(grep '^ansible-core' tests/requirements.txt)"
	touch $@

sanity: $(SANITY_VENV)/.installed
	@mkdir -p $(ANSIBLE_TEST_CACHE)
	@for v in 24_2 24_3 25_0 25_1 25_2 25_3; do cp tests/sanity/get_pip_offline.py $(ANSIBLE_TEST_CACHE)/get_pip_$$v.py; done
	rm -rf build/sanity && mkdir -p $(SANITY_DIR)
	git ls-files -co --exclude-standard -z | xargs -0 sh -c 'for f; do [ -e "$$f" ] && cp --parents "$$f" $(SANITY_DIR)/; done' _
	cd $(SANITY_DIR) && git init -q && git add -A && \
	  PATH=$(CURDIR)/$(SANITY_VENV)/bin:$$PATH $(CURDIR)/$(SANITY_VENV)/bin/ansible-test sanity \
	    --color no --local --requirements --python 3.11 $(SANITY_ARGS) > $(CURDIR)/build/sanity.log 2>&1 \
	  || { grep -vE "is ignored: it is neither|^(Collecting|Downloading|Installing|Successfully|Requirement|Using cached|Processing|Looking in|Attempting|  )" $(CURDIR)/build/sanity.log; exit 1; }
	@grep -E "^(Running sanity|WARNING: Skipping)" build/sanity.log; echo "sanity: passed"

# `ansible-test integration --local` on a copy of the collection (as for sanity), run with
# the project venv's ansible-test, whose Python has the collection's requirements
# (requests, cryptography, mnemonic) and community.crypto (the `ansible` package). Each
# tests/integration/targets/encedo_* target depends on setup_emulator, which starts the
# emulator for it. INTEGRATION_ARGS e.g. encedo_info, or -v; the output goes to
# build/integration.log (its tail is shown on failure).
INTEGRATION_DIR := build/integration/ansible_collections/encedo/hem

integration: venv
	rm -rf build/integration && mkdir -p $(INTEGRATION_DIR)
	git ls-files -co --exclude-standard -z | xargs -0 sh -c 'for f; do [ -e "$$f" ] && cp --parents "$$f" $(INTEGRATION_DIR)/; done' _
	cd $(INTEGRATION_DIR) && git init -q && git add -A && env -u ANSIBLE_CONFIG PATH=$(CURDIR)/$(BIN):$$PATH \
	  $(CURDIR)/$(BIN)/ansible-test integration --color no --local --python 3.11 $(INTEGRATION_ARGS) \
	    > $(CURDIR)/build/integration.log 2>&1 || { tail -n 150 $(CURDIR)/build/integration.log; exit 1; }
	@grep -E "^(Running .* integration test|testhost +:)" build/integration.log; echo "integration: passed (log: build/integration.log)"

lint: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production roles/ playbooks/

pytest: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest $(PYTEST_ARGS) tests

unit: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q tests/unit

test: sanity lint pytest integration

demo: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m tests.demo

# Fleet benchmark (not part of `make test`): N = 1, 10, 100 emulated devices; BENCH_ARGS e.g. --devices 10 --forks 10
bench: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python tests/perf/fleet.py $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) $(SANITY_VENV) .pytest_cache
