# Tooling for the mailops.imap collection. The repository root is the collection root.
#
#   make test         deps, sanity, lint, typecheck, unit, integration (stops at the first failure)
#   make deps         system packages (Dovecot, Cyrus unpacked, as root) + .venv from tests/requirements*.txt
#   make collection   lay the working tree out as build/ansible_collections/mailops/imap
#   make sanity       ansible-test sanity on that copy
#   make lint         ansible-lint (production profile, .ansible-lint) on roles/ and playbooks/ of that copy
#   make typecheck    mypy (tests/mypy.ini) on plugins/ of that copy
#   make generate     rewrite the files generated from the schema (tests/update_generated.py; a unit test fails when stale)
#   make unit         pytest tests/unit on that copy
#   make integration  pytest tests/integration on that copy (real Dovecot), in two pytest-xdist workers
#                     (INTEGRATION_WORKERS; PYTEST_ARGS='-n 0' runs them in this process, one after the other)
#   make dist         build the collection tarball into build/
#   make bench        tests/bench/bench.py (the engine vs dsync, the floor, the baseline, imapsync if on PATH; ~5 min),
#                     then tests/bench/scenarios.py (50,000 messages, 300 folders, bulk, ansible-playbook; ~5 min)
#   make bench-role   the imapsync role with 500 tasks under a user manager (tests/bench/role_bench.py, root)
#   make demo         two throwaway Dovecot servers, migrate.yml, the role under a user manager (tests/demo/demo.py)
#   make clean        remove build output; make distclean also removes .venv

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
# ansible-core 2.19 needs Python >= 3.11; prefer an explicit 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(ROOT)/.venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
BUILD := $(ROOT)/build
COLL := $(BUILD)/ansible_collections/mailops/imap

# Debian packages the integration tests need (a local Dovecot with Sieve and LMTP),
# plus shellcheck so that the sanity test of that name runs instead of being skipped,
# plus systemd (the tests' and the demo's private user manager), python3-venv (the
# imapsync role builds the engine's virtual environment with python3 -m venv), and openssh-server
# and sudo (tests/integration/test_managed_host.py: a throwaway sshd and a user who becomes root with sudo).
APT_PACKAGES := dovecot-imapd dovecot-sieve dovecot-lmtpd openssl shellcheck systemd python3-venv openssh-server sudo

# Cyrus IMAP 3.6, a remote server nobody here wrote (tests/integration/harness/cyrus.py): tests/install_cyrus.sh
# unpacks Debian's cyrus-imapd and cyrus-common (they conflict with dovecot under apt) into
# /var/cache/mailops-imap-tests and installs these, their runtime libraries (not libclamav12 and libzephyr4, needed
# only by cyr_virusscan and notifyd) and sasl2-bin (saslpasswd2 writes each test server's sasldb).
CYRUS_APT_PACKAGES := libical3 libicu72 libjansson4 libkrb5-3 libldap-2.5-0 libpcre3 libpq5 libsqlite3-0 libssl3 \
  libwrap0 libxapian30 libxml2 libcom-err2 zlib1g libsasl2-2 libsasl2-modules libsasl2-modules-db sasl2-bin

# Environment of everything that runs against the laid-out copy: the collection is
# importable as ansible_collections.mailops.imap and ansible-playbook finds it.
TEST_ENV := PYTHONPATH=$(BUILD) ANSIBLE_COLLECTIONS_PATH=$(BUILD) PATH=$(VENV)/bin:$$PATH

# Extra arguments, e.g. make unit PYTEST_ARGS='-x -k state', make bench BENCH_ARGS=--no-double
PYTEST_ARGS ?=
SANITY_ARGS ?=
LINT_ARGS ?=
MYPY_ARGS ?=
BENCH_ARGS ?=
SCENARIOS_ARGS ?=

.PHONY: test deps system-deps cyrus-deps venv ansible-test-get-pip collection sanity lint typecheck generate unit integration dist bench demo clean distclean

test: deps
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory integration

deps: system-deps cyrus-deps venv

# Idempotent: does nothing when every package is installed already. Not root: warn only
# (sanity and unit tests do not need these; the integration tests do).
system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "WARNING: missing system packages:$$missing (install them as root; the integration tests need them)" >&2; \
	  exit 0; \
	fi; \
	echo "Installing:$$missing"; \
	apt-get update -q; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing </dev/null

# Idempotent like system-deps: does nothing when the libraries are installed and the unpacked tree is there.
cyrus-deps: system-deps
	@bash $(ROOT)/tests/install_cyrus.sh $(CYRUS_APT_PACKAGES)

venv: $(STAMP)

# Reinstalled only when a requirements file changes (or .venv is gone). Both files in one pip call, so
# that the resolver keeps ansible-core at the pin of tests/requirements.txt (or fails) whatever the
# linters of tests/requirements-lint.txt would like.
REQUIREMENTS := $(ROOT)/tests/requirements.txt $(ROOT)/tests/requirements-lint.txt
$(STAMP): $(REQUIREMENTS)
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	@touch $@

# A fresh copy on every call: tracked and untracked-but-not-ignored files of the working
# tree (git ls-files -co --exclude-standard), minus files deleted from the working tree.
# ansible-test needs the ansible_collections/NAMESPACE/NAME path, and so do imports of
# ansible_collections.mailops.imap. The copy gets a .git of its own (git init, no
# commit): without one, ansible-test walks up from the copy, finds this repository's .git
# and lists files with git there, where build/ is ignored: it then sees no file at all,
# says "WARNING: All targets skipped." and passes.
# With it, ansible-test lists exactly what git ls-files -co --exclude-standard lists.
# Kept across refreshes: ansible-test's own virtual environment for --venv, which lives in
# the copy's (ignored) tests/output/.tmp/delegation; rebuilding it costs about 2 s a run.
DELEGATION := tests/output/.tmp/delegation
collection:
	@rm -rf $(BUILD)/.delegation
	@if [ -d $(COLL)/$(DELEGATION) ]; then mv $(COLL)/$(DELEGATION) $(BUILD)/.delegation; fi
	@rm -rf $(COLL)
	@mkdir -p $(COLL)
	@cd $(ROOT) && \
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git ls-files -z --cached --others --exclude-standard \
	  | while IFS= read -r -d '' f; do \
	      if [ -e "$$f" ] || [ -L "$$f" ]; then printf '%s\0' "$$f"; fi; \
	    done \
	  | tar --null --no-recursion -T - -cf - | tar -xf - -C $(COLL); \
	else \
	  tar --exclude=./.venv --exclude=./build --exclude=./tests/output --exclude=./.git \
	      --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -xf - -C $(COLL); \
	fi
	@git -C $(COLL) init -q
	@if [ -d $(BUILD)/.delegation ]; then mkdir -p $(dir $(COLL)/$(DELEGATION)) && mv $(BUILD)/.delegation $(COLL)/$(DELEGATION); fi
	@echo "collection laid out in $(COLL) ($$(git -C $(COLL) ls-files -co --exclude-standard | wc -l) files)"

# ansible-test creates its virtual environments without pip and bootstraps pip in each by
# running ~/.ansible/test/cache/get_pip_<pip version>.py, downloaded on first use from a
# host that is unreachable here (only PyPI is): "Download failed ... does not have pip
# available". Put our offline stand-in (.ci/get_pip.py) there instead. A file that is not
# ours (a real get-pip.py fetched elsewhere) is left alone.
GET_PIP_MARKER := mailops.imap: offline get-pip stand-in
ansible-test-get-pip: venv
	@v=$$($(VENV_PY) -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(types.SimpleNamespace(version="3.11"))["pip"])') \
	  || { echo "cannot read the pip version ansible-test bootstraps (its internals changed?): see the ansible-test-get-pip target" >&2; exit 1; }; \
	dest=$$HOME/.ansible/test/cache/get_pip_$${v//./_}.py; \
	if [ ! -e "$$dest" ] || { grep -q '$(GET_PIP_MARKER)' "$$dest" && ! cmp -s $(ROOT)/.ci/get_pip.py "$$dest"; }; then \
	  install -D -m 0644 $(ROOT)/.ci/get_pip.py "$$dest" && echo "installed $$dest"; \
	fi

# ansible-test sanity: every default test (none skipped; pslint finds no PowerShell file and
# so checks nothing), on Python 3.11 only (the multi-version tests, compile and import, would
# otherwise run for every Python 3.8-3.13 found on PATH). No docker engine here, so --venv:
# ansible-test runs itself in a venv of its own (the copy's tests/output/.tmp/delegation,
# kept by `collection`) and each test in a venv under ~/.ansible/test/venv, all from PyPI
# and reused on later runs. --local works too and is as fast once cached, but would install
# ansible-test's requirements into .venv, which should hold exactly tests/requirements*.txt.
# Time (2 cores): about 55 s from nothing (ansible-test's venvs, plus .venv), about 18 s
# cached, most of it pylint. No tests/sanity/ignore-*.txt: fix the finding instead.
sanity: deps ansible-test-get-pip collection
	cd $(COLL) && $(VENV)/bin/ansible-test sanity --python 3.11 --venv --requirements $(SANITY_ARGS)

# ansible-lint with the production profile on what ships: the collection built into a tarball from the laid-out
# copy and installed from it (in $(BUILD)/lint), linted whole (roles, playbooks, meta, changelogs, docs, ...) as
# configured by the .ansible-lint it ships (offline: it installs nothing; the exclusions; the kinds). It finds
# this collection through ANSIBLE_COLLECTIONS_PATH=$(BUILD)/lint. ANSIBLE_HOME keeps its cache there and keeps
# ~/.ansible/collections (an older mailops.imap installed there, say) off its collections path.
# No .ansible-lint-ignore: fix the finding instead.
LINT_DIR := $(BUILD)/lint
lint: deps collection
	rm -rf $(LINT_DIR) && mkdir -p $(LINT_DIR)
	$(VENV)/bin/ansible-galaxy collection build --output-path $(LINT_DIR) $(COLL) >/dev/null
	ANSIBLE_HOME=$(LINT_DIR)/.ansible $(VENV)/bin/ansible-galaxy collection install --offline -p $(LINT_DIR) \
	  $(LINT_DIR)/mailops-imap-*.tar.gz >/dev/null
	cd $(LINT_DIR)/ansible_collections/mailops/imap && PATH=$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(LINT_DIR) \
	  ANSIBLE_HOME=$(LINT_DIR)/.ansible $(VENV)/bin/ansible-lint $(LINT_ARGS)

# mypy on every plugin directory of the laid-out copy (plugins/module_utils, modules, action, ...), configured by
# tests/mypy.ini: every function typed, no error. It runs from $(BUILD), so that the files are the modules
# ansible_collections.mailops.imap.plugins.* (explicit_package_bases), as Ansible imports them; ansible-core and
# imapclient ship no type information, so their imports are Any (and only theirs). Its cache lives in $(BUILD).
# The parts of files generated from the schema of the task and target fields (_engine/schema.py): today the role's
# meta/argument_specs.yml. Written in the working tree (not the copy); run after changing a field of the schema.
generate: deps
	cd $(ROOT) && $(VENV_PY) tests/update_generated.py

typecheck: deps collection
	cd $(BUILD) && $(VENV_PY) -m mypy --config-file $(COLL)/tests/mypy.ini --cache-dir $(BUILD)/.mypy_cache $(MYPY_ARGS) \
	  ansible_collections/mailops/imap/plugins

# pytest in the laid-out copy; exit status 5 (nothing collected) is a failure like any other.
define run_pytest
	cd $(COLL) && $(TEST_ENV) $(VENV_PY) -m pytest $(1) -q $(PYTEST_ARGS)
endef

unit: deps collection
	$(call run_pytest,tests/unit)

# The integration tests in INTEGRATION_WORKERS pytest-xdist workers, each taking whole files (--dist loadfile: a
# file's module-scoped fixtures, such as test_role.py's deployment, are set up once; every worker has its own
# session fixtures, Dovecot servers included), the slowest files first (tests/integration/conftest.py SLOWEST_FIRST;
# --no-loadscope-reorder keeps that order). PYTEST_ARGS comes last and wins: PYTEST_ARGS='-n 0' runs them serially.
INTEGRATION_WORKERS ?= 2
integration: deps collection
	$(call run_pytest,tests/integration -n $(INTEGRATION_WORKERS) --dist loadfile --no-loadscope-reorder)

dist: deps collection
	cd $(COLL) && $(VENV)/bin/ansible-galaxy collection build --force --output-path $(BUILD)

# The benchmark (tests/bench/bench.py; real Dovecot servers, like the integration tests): every tool x scenario (first,
# no-change, +1 %, 2x), 3 interleaved rounds, mail stores on disk (Dovecot's default mail_fsync) and on tmpfs, every run
# verified. Options: BENCH_ARGS='--variants disk --tools engine,dsync,floor --repeat 5 --no-double --profile'.
bench: deps collection
	cd $(COLL) && $(TEST_ENV) $(VENV_PY) tests/bench/bench.py $(BENCH_ARGS)
	cd $(COLL) && $(TEST_ENV) $(VENV_PY) tests/bench/scenarios.py $(SCENARIOS_ARGS)

# The imapsync role with 500 tasks on one host (tests/bench/role_bench.py): first apply and re-apply timed, under a
# private systemd user manager (as root, like the integration tests). E.g. make bench-role BENCH_ROLE_ARGS='--tasks 1000'
BENCH_ROLE_ARGS ?=
.PHONY: bench-role
bench-role: deps collection
	cd $(COLL) && $(TEST_ENV) $(VENV_PY) tests/bench/role_bench.py $(BENCH_ROLE_ARGS)

# The newcomer's tour (tests/demo/demo.py, under a minute): two throwaway Dovecot servers on loopback, a sample
# account, playbooks/migrate.yml in check mode, for real and again, then playbooks/deploy.yml (the imapsync role,
# imapsync_scope: user) under a private systemd user manager, its timer firing, the results; everything is removed
# at the end. As root (Dovecot runs as the dovecot user; the user manager needs a mount namespace); `deps`
# installs what it needs. tests/integration/test_demo.py runs the same script in CI (make integration).
# DEMO_ARGS=--verbose shows the whole output of every ansible-playbook run.
DEMO_ARGS ?=
demo: deps collection
	cd $(COLL) && $(TEST_ENV) $(VENV_PY) tests/demo/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(BUILD) $(ROOT)/tests/output $(ROOT)/.pytest_cache $(ROOT)/*.tar.gz
	find $(ROOT) -path $(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
