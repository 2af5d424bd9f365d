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
# Python keeps compiled bytecode (__pycache__, ignored by git and by the collection build): on a
# machine that sets PYTHONDONTWRITEBYTECODE every one of the suite's Python processes
# (ansible-playbook, each module run, each emulator) would compile ansible-core, requests,
# cryptography and the emulator from source again: about 0.6 s of CPU more for the smallest
# ansible-playbook run, measured on this project's machine.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: all venv link test sanity integration lint pytest unit demo bench clean

all: test

# Every venv is filled by uv (installed into .venv first by pip): on this project's machine it
# installs a venv's packages in seconds where pip takes minutes, which keeps `make test`, with
# its venv per ansible-core version, within CI's time. Venvs are made with pip (--seed) for
# the tools that call it (ansible-test --requirements).
UV := $(BIN)/uv
uv_venv = rm -rf $(1) && $(UV) venv --quiet --seed --python $(2) $(1)
uv_install = $(UV) pip install --quiet --python $(1)/bin/python

$(STAMP): tests/requirements.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$$(grep '^uv' tests/requirements.txt)"
	$(call uv_install,$(VENV)) -r tests/requirements.txt
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

$(SANITY_VENV)/.installed: tests/requirements.txt | $(STAMP)
	$(call uv_venv,$(SANITY_VENV),$(PYTHON))
	$(call uv_install,$(SANITY_VENV)) "$$(grep '^ansible-core' tests/requirements.txt)"
	touch $@

# A copy of the collection in directory $(1) (…/ansible_collections/encedo/hem), a git
# repository of its own, for ansible-test (sanity, the matrix's sanity, integration).
collection_copy = rm -rf $(1) && mkdir -p $(1) && \
  git ls-files -co --exclude-standard -z | xargs -0 sh -c 'for f; do [ -e "$$f" ] && cp --parents "$$f" $(1)/; done' _ && \
  cd $(1) && git init -q && git add -A

# `ansible-test sanity` with venv $(1) on Python $(2), on a copy of the collection in $(3),
# output to $(4) (shown, without pip's lines, on failure), with more arguments $(5). The offline get-pip stands in for
# every pip version that venv's ansible-test names.
define run_sanity
@mkdir -p $(ANSIBLE_TEST_CACHE)
@for v in $$(grep -ohE "pip='[0-9.]+'" $(1)/lib/python*/site-packages/ansible_test/_internal/python_requirements.py | tr -dc '0-9.\n' | tr . _); do \
  cp tests/sanity/get_pip_offline.py $(ANSIBLE_TEST_CACHE)/get_pip_$$v.py; done
$(call collection_copy,$(3)) && \
  PATH=$(CURDIR)/$(1)/bin:$$PATH $(CURDIR)/$(1)/bin/ansible-test sanity \
    --color no --local --requirements --python $(2) $(SANITY_ARGS) $(5) > $(CURDIR)/$(4) 2>&1 \
  || { grep -vE "is ignored: it is neither|^(Collecting|Downloading|Installing|Successfully|Requirement|Using cached|Processing|Looking in|Attempting|  )" $(CURDIR)/$(4); exit 1; }
endef

sanity: $(SANITY_VENV)/.installed
	$(call run_sanity,$(SANITY_VENV),3.11,$(SANITY_DIR),build/sanity.log)
	@grep -E "^(Running sanity|WARNING: Skipping)" build/sanity.log; echo "sanity: passed"

# `ansible-test integration --local` on a copy of the collection (as for sanity), run with
# the project venv's ansible-test, whose Python has the collection's requirements
# (requests, cryptography, mnemonic) and community.crypto (the `ansible` package). Each
# tests/integration/targets/encedo_* target depends on setup_emulator, which starts the
# emulator for it. INTEGRATION_ARGS e.g. encedo_info, or -v; the output goes to
# build/integration.log (its tail is shown on failure).
INTEGRATION_DIR := build/integration/ansible_collections/encedo/hem

integration: venv
	$(call collection_copy,$(INTEGRATION_DIR)) && env -u ANSIBLE_CONFIG PATH=$(CURDIR)/$(BIN):$$PATH \
	  $(CURDIR)/$(BIN)/ansible-test integration --color no --local --python 3.11 $(INTEGRATION_ARGS) \
	    > $(CURDIR)/build/integration.log 2>&1 || { tail -n 150 $(CURDIR)/build/integration.log; exit 1; }
	@grep -E "^(Running .* integration test|testhost +:)" build/integration.log; echo "integration: passed (log: build/integration.log)"

lint: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production roles/ playbooks/

# Two workers (pytest-xdist), a test file each at a time (--dist loadfile: a file's module-scoped
# fleets and playbook runs stay in one worker). Most of the suite's wall time is spent waiting on
# emulated devices (login delays, reboots, formats) and on ansible-playbook, so two workers on two
# cores nearly halve it. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
pytest: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) tests

# The unit layer alone (no emulator process, no ansible-playbook), on the same two workers.
unit: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests/unit

# Every test, and the release checks (below): the version matrix, the dependency floors,
# galaxy-importer on the built artifact, the collection docs and the changelog. Three jobs run
# side by side on this project's 2 cores, pytest (on two workers, the longest) first, then
# sanity, lint, ansible-test integration and the release checks as slots free. Each job works
# in build/ directories and venvs of its own; .venv and the link are made first, and the jobs'
# make is told they are done (-o): otherwise it may hand the first slots to the jobs queued
# behind pytest once the link is made (measured: pytest started a minute late).
test: venv link
	$(MAKE) --no-print-directory --output-sync=line -j3 -o venv -o link test-jobs

.PHONY: test-jobs suites
test-jobs: pytest sanity lint integration release-checks

# The two suites one after the other (what `make test` runs side by side).
suites:
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory integration

demo: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m tests.demo

# Fleet benchmark (not part of `make test`): N = 1, 10, 100 emulated devices; BENCH_ARGS e.g. --devices 10 --forks 10
bench: venv link
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python tests/perf/fleet.py $(BENCH_ARGS)

# ---------------------------------------------------------------------------- release checks
# antsibull-changelog lint: the fragments (changelogs/fragments/) are valid.
.PHONY: release-checks changelog-lint importer docs-lint
release-checks: changelog-lint docs-lint importer floor matrix
changelog-lint: venv
	$(BIN)/antsibull-changelog lint

# galaxy-importer (what Galaxy and Automation Hub run at upload) on the built artifact,
# offline (tests/galaxy-importer.cfg explains the settings), in its own .venv-importer:
# it pins attrs and ansible-lint, which must not move .venv's. Any warning fails.
IMPORTER_VENV := .venv-importer
$(IMPORTER_VENV)/.installed: tests/importer-requirements.txt | $(STAMP)
	$(call uv_venv,$(IMPORTER_VENV),$(PYTHON))
	$(call uv_install,$(IMPORTER_VENV)) -r tests/importer-requirements.txt
	touch $@

importer: $(IMPORTER_VENV)/.installed
	rm -rf build/artifact && mkdir -p build/artifact
	env -u ANSIBLE_CONFIG $(IMPORTER_VENV)/bin/ansible-galaxy collection build --force --output-path build/artifact . > /dev/null
	cd build/artifact && env -u ANSIBLE_CONFIG GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy-importer.cfg \
	  PATH=$(CURDIR)/$(IMPORTER_VENV)/bin:$$PATH $(CURDIR)/$(IMPORTER_VENV)/bin/python -m galaxy_importer.main \
	  $$(ls $(CURDIR)/build/artifact/encedo-hem-*.tar.gz) > $(CURDIR)/build/importer.log 2>&1 \
	  || { cat $(CURDIR)/build/importer.log; exit 1; }
	@if grep -E "^(WARNING|ERROR)" build/importer.log; \
	  then echo "importer: warnings or errors above"; exit 1; fi
	@grep -q "Importer processing completed successfully" build/importer.log
	@echo "importer: no warnings, no errors"

# antsibull-docs: the collection docs (extra docs, plugin and role docs) lint clean, with
# references to this collection and to ansible.builtin validated. community.crypto (an
# optional dependency, in encedo_tls's seealso) is not validated: `--validate-collection-refs
# all` would, but it loads every collection of the `ansible` package (9.5 min here).
docs-lint: venv link
	env -u ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/build/collections PATH=$(CURDIR)/$(BIN):$$PATH \
	  $(BIN)/antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs dependent \
	  --check-extra-docs-refs .

# ---------------------------------------------------------------------------- dependency floors
# The lowest versions meta/ee-requirements.txt admits (`name>=X`) are installed exactly
# (.venv-floor, cached: rebuilt when meta/ee-requirements.txt changes) and the transport,
# attestation, certificate and TLS checks run on them. Each floor is past the advisories
# that apply (meta/ee-requirements.txt names them); mnemonic (optional) is pinned too.
FLOOR_VENV := .venv-floor
FLOOR_PINS = $(shell sed -nE 's/^([A-Za-z0-9_.-]+)>=([0-9][0-9.]*).*/\1==\2/p' meta/ee-requirements.txt)
FLOOR_TESTS := tests/unit/plugins/module_utils/test_attestation.py tests/unit/plugins/module_utils/test_x509.py \
  tests/unit/plugins/module_utils/test_tls_bundle.py tests/unit/plugins/module_utils/test_hem_client_transport.py \
  tests/unit/plugins/module_utils/test_hem_client_live.py

$(FLOOR_VENV)/.installed: meta/ee-requirements.txt tests/matrix-requirements.txt | $(STAMP)
	$(call uv_venv,$(FLOOR_VENV),$(PYTHON))
	$(call uv_install,$(FLOOR_VENV)) "$$(grep '^ansible-core' tests/requirements.txt)" -r tests/matrix-requirements.txt $(FLOOR_PINS)
	touch $@

.PHONY: floor
floor: $(FLOOR_VENV)/.installed link
	@for pin in $(FLOOR_PINS); do $(FLOOR_VENV)/bin/pip freeze 2>/dev/null | grep -qix "$$pin" \
	  || { echo "floor: $$pin is not what $(FLOOR_VENV) holds"; exit 1; }; done
	PATH=$(CURDIR)/$(FLOOR_VENV)/bin:$$PATH $(FLOOR_VENV)/bin/python -m pytest -q $(FLOOR_TESTS)
	@echo "floor: passed on $(FLOOR_PINS)"

# ---------------------------------------------------------------------------- version matrix
# Every ansible-core minor version that meta/runtime.yml's requires_ansible admits
# (tests/unit/test_runtime.py checks that the two agree). `make test` covers MATRIX_MAIN
# (.venv); `make matrix` runs sanity and the unit tests on each other version, each in
# its own .venv-<version> (cached; rebuilt when tests/matrix-requirements.txt changes),
# and the role's converge + no-op on the emulator on the oldest and the newest version.
# ansible-core 2.20 and later need Python 3.12 or newer (pyenv's where no python3.12 is
# on PATH). One version alone: `make matrix-2.17` (or matrix-sanity-2.17, matrix-unit-2.17,
# matrix-role-2.17).
MATRIX_VERSIONS := 2.17 2.18 2.19 2.20 2.21
MATRIX_MAIN := 2.19
MATRIX_OTHERS := $(filter-out $(MATRIX_MAIN),$(MATRIX_VERSIONS))
MATRIX_EDGES := $(firstword $(MATRIX_VERSIONS)) $(lastword $(MATRIX_VERSIONS))
MATRIX_PY312 := 2.20 2.21
PYTHON312 ?= $(or $(wildcard /root/.pyenv/versions/3.12.*/bin/python3.12),$(shell command -v python3.12))
matrix_python = $(if $(filter $(1),$(MATRIX_PY312)),$(firstword $(PYTHON312)),$(PYTHON))
matrix_pyver = $(shell $(call matrix_python,$(1)) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
MATRIX_ROLE_TESTS := tests/integration/test_role.py -k "fresh_devices_to_desired_state_then_noop"

.PHONY: matrix
matrix: $(foreach v,$(MATRIX_OTHERS),matrix-sanity-$(v) matrix-unit-$(v)) $(foreach v,$(MATRIX_EDGES),matrix-role-$(v))
	@echo "matrix: passed ($(MATRIX_OTHERS): sanity + unit; $(MATRIX_EDGES): role converge + no-op)"

matrix-%: matrix-sanity-% matrix-unit-% ;

# The venv of one version: that ansible-core, the test needs, and community.crypto (the
# role's optional TLS step) copied from .venv's `ansible` package. Precious: make would
# otherwise delete the stamp of this intermediate file after each run, and rebuild the venv.
.PRECIOUS: .venv-%/.installed
.venv-%/.installed: tests/matrix-requirements.txt | $(STAMP)
	$(call uv_venv,.venv-$*,$(call matrix_python,$*))
	$(call uv_install,.venv-$*) "ansible-core==$*.*" -r tests/matrix-requirements.txt
	src=$$($(BIN)/python -c 'import ansible_collections.community.crypto as c; print(list(c.__path__)[0])') && \
	  dst=$$(.venv-$*/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ansible_collections/community && \
	  mkdir -p $$dst && cp -a $$src $$dst/
	touch $@

# pylint and pep8 read the code as it is, whatever the ansible-core version: `make sanity`
# (MATRIX_MAIN) runs them on every file. The matrix's edges run them again on the shipped code
# (plugins/: what the linters' ansible-core-specific checks are about), with each edge's pinned
# pylint; the tests' own code (tests/, which no user runs) is linted once, by MATRIX_MAIN. The
# versions between the edges skip them. Every other sanity test (validate-modules, ansible-doc,
# import, compile, runtime-metadata, ...) runs on every version, on every file.
MATRIX_SANITY_LINTERS := --test pylint --test pep8
matrix-sanity-%: .venv-%/.installed
	$(call run_sanity,.venv-$*,$(call matrix_pyver,$*),build/sanity-$*/ansible_collections/encedo/hem,build/sanity-$*.log,--skip-test pylint --skip-test pep8)
	$(if $(filter $*,$(MATRIX_EDGES)),$(call run_sanity,.venv-$*,$(call matrix_pyver,$*),build/sanity-$*/ansible_collections/encedo/hem,build/sanity-$*-linters.log,$(MATRIX_SANITY_LINTERS) plugins/))
	@echo "sanity on ansible-core $*: passed"

matrix-unit-%: .venv-%/.installed link
	PATH=$(CURDIR)/.venv-$*/bin:$$PATH .venv-$*/bin/python -m pytest -q tests/unit

matrix-role-%: .venv-%/.installed link
	PATH=$(CURDIR)/.venv-$*/bin:$$PATH .venv-$*/bin/python -m pytest -q $(MATRIX_ROLE_TESTS)

clean:
	rm -rf build $(VENV) $(SANITY_VENV) .pytest_cache $(foreach v,$(MATRIX_VERSIONS),.venv-$(v)) $(FLOOR_VENV) $(IMPORTER_VENV)
