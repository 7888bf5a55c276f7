# tacline. `make demo` runs the main job end to end; `make test` runs the whole
# suite. Both install what is missing first (scripts/ensure-*.sh) and say so.
GO ?= go
BIN := bin/tacline
# step-ca from the pinned github.com/smallstep/certificates module (a tool
# in go.mod), for the step-ca interop tests, demo and benchmark. Built once;
# cgo for its PKCS#11 KMS, without YubiKey support (tag noyubikey: no
# libpcsclite needed).
STEPCA := bin/step-ca

.PHONY: all build test unit e2e lint openapi-lint bench demo tools clean fuzz deb stepca

all: build stepca

stepca: $(STEPCA)

$(STEPCA): go.mod go.sum
	CGO_ENABLED=1 $(GO) build -tags noyubikey -o $@ github.com/smallstep/certificates/cmd/step-ca

tools:
	@scripts/ensure-tools.sh

build:
	$(GO) build -o $(BIN) ./cmd/tacline

# The whole suite: race-enabled unit and integration tests over real SQLite,
# real PostgreSQL (an existing server on 127.0.0.1:5432, or a throwaway cluster)
# and real SoftHSM2 tokens, then the end-to-end tests in test/ that start real
# processes, then the lint checks.
test: tools build stepca
	@dsn=$$(scripts/ensure-postgres.sh) && \
	 echo "make test: PostgreSQL for tests: $$dsn" && \
	 TACLINE_TEST_PG_DSN="$$dsn" TACLINE_BIN="$(CURDIR)/$(BIN)" TACLINE_STEPCA_BIN="$(CURDIR)/$(STEPCA)" \
	 $(GO) test -race -count=1 -timeout 20m ./...
	@# The race detector's sync.Pool drops buffers on purpose, so the check of
	@# what the pooled JSON answer allocates (api, raceEnabled) runs once more
	@# without it.
	$(GO) test -count=1 -run '^TestRespondWritesJSONWithoutCopies$$' ./api
	@$(MAKE) --no-print-directory lint

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@scripts/openapi-lint.sh

# Redocly CLI's recommended rules on api/openapi.yaml and register/openapi.yaml:
# any error or warning fails (installs the pinned Redocly CLI when missing).
openapi-lint:
	@scripts/openapi-lint.sh

bench: tools build
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The Debian package (dpkg-deb only): binary, hardened systemd unit, the
# tacline user, /etc/tacline/tacline.yaml as a conffile. Written to bin/.
deb: tools
	@scripts/build-deb.sh bin

demo: tools build stepca
	$(BIN) demo --dir var/demo

clean:
	rm -rf bin var
