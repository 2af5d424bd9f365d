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

.PHONY: all venv link test sanity lint pytest unit demo clean

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
# files git knows about (tracked or new, not ignored) there.
sanity: venv
	rm -rf build/sanity && mkdir -p $(SANITY_DIR)
	git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} $(SANITY_DIR)/ 2>/dev/null || true
	cd $(SANITY_DIR) && git init -q && git add -A && \
	  PATH=$(CURDIR)/$(BIN):$$PATH $(CURDIR)/$(BIN)/ansible-test sanity --color no --venv --python 3.11 $(SANITY_ARGS)

lint: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production roles/ playbooks/

pytest: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest $(PYTEST_ARGS) tests

unit: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q tests/unit

test: sanity lint pytest

demo: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python tests/demo.py

clean:
	rm -rf build $(VENV) .pytest_cache
