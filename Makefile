# `make test` and `make demo` each do all of their own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: test check demo demo-compose lint system-deps s3rver bench dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The dependencies as wheels, for the tests that install taydash into an interpreter of their
# own (the scheduled drill as another user): no package index needed while the suite runs.
WHEELHOUSE := $(VENV)/wheelhouse/.stamp
$(WHEELHOUSE): pyproject.toml $(STAMP)
	$(PY) -m pip wheel -q -w $(VENV)/wheelhouse . "setuptools>=77"
	rm -f $(VENV)/wheelhouse/taydash_hooks-*.whl
	touch $@

# Debian packages the real-service tests and the demo use. Installed when
# missing and we are root (one apt-get update); otherwise say what to install.
system-deps:
	@missing=""; \
	for pair in git:git gpg:gnupg gpg-agent:gnupg ssh-keygen:openssh-client \
	            pg_dump:postgresql-client strace:strace openssl:openssl zstd:zstd \
	            victoria-metrics:victoria-metrics vmbackup:victoria-metrics vmrestore:victoria-metrics \
	            dockerd:docker.io docker-compose:docker-compose busybox:busybox-static \
	            docker-registry:docker-registry \
	            faketime:faketime; do \
	    cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	    command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	    || missing="$$missing postgresql"; \
	missing=$$(printf '%s\n' $$missing | sort -u | tr '\n' ' ' | sed 's/ *$$//'); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "installing Debian packages: $$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else \
	        echo "missing tools; install the Debian packages: sudo apt-get install $$missing" >&2; exit 3; \
	    fi; \
	fi

# s3rver, a second S3 implementation for the store suite (it lacks versioning and conditional
# writes, so the suite sees what taydash does on such a server). From the npm registry.
S3RVER := $(VENV)/s3rver/node_modules/.bin/s3rver
s3rver: $(S3RVER)
$(S3RVER):
	@command -v npm >/dev/null 2>&1 || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	    else echo "npm is missing; install it: sudo apt-get install npm" >&2; exit 3; fi; }
	mkdir -p $(VENV)/s3rver
	cd $(VENV)/s3rver && npm install --silent --no-audit --no-fund --prefix . s3rver@3.7.1 >/dev/null

lint: $(STAMP)
	@# The bench scripts have no .py suffix: named, or ruff would skip them.
	$(PY) -m ruff check taydash_hooks tests bench $$(find bench -maxdepth 1 -type f ! -name '*.py')
	$(PY) -m mypy

# The contributor's fast loop: lint, types and every test that needs no service (no
# database, VictoriaMetrics, S3 or Docker: tests/conftest.py marks those "slow").
check: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow" -n auto -p no:cacheprovider

test: export PATH := $(PATH):/usr/sbin:/sbin
test: $(STAMP) $(WHEELHOUSE) system-deps s3rver lint
	@rm -f $(VENV)/pytest-status
	$(PY) -m pytest -q; status=$$?; echo $$status > $(VENV)/pytest-status; exit $$status

demo: $(STAMP) system-deps
	$(VENV)/bin/taydash demo

# The same lifecycle against a docker compose stack: a private Docker daemon (root), else the
# mount-namespace emulation; it says which.
demo-compose: $(STAMP) system-deps
	$(VENV)/bin/taydash demo --compose

# A wheel of this checkout (the package is not on the package index): pip install dist/*.whl
# Seconds, not the test environment: pip builds it in an isolated environment of its own.
dist:
	$(PYTHON) -m pip wheel -q --no-deps -w dist .

bench: $(STAMP) $(WHEELHOUSE) system-deps
	@status=0; for b in bench/*; do \
	    [ -f "$$b" ] && [ -x "$$b" ] || continue; \
	    echo "== $$b"; PATH="$(CURDIR)/$(VENV)/bin:$$PATH" "$$b" || status=1; \
	done; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
