# snowrain: see README.md. Two commands matter: `make run` and `make test`.
GO      ?= go
BIN     := ./snowrain
VAR     := $(CURDIR)/var
DNS     ?=
DNSFLAG := $(if $(DNS),--dns $(DNS),)

.PHONY: all build run test test-deps unit e2e bench bench-anchors bench-zgrab2 fuzz vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/snowrain

# The daemon on an embedded SQLite default in ./var/, milter on a local
# socket; it prints the main.cf lines to paste.
run: build
	mkdir -p $(VAR)
	$(BIN) serve --config $(CURDIR)/contrib/snowrain.dev.conf \
		--milter inet:127.0.0.1:8891 --db $(VAR)/snowrain.db --metrics 127.0.0.1:9425 $(DNSFLAG)

# Everything the tests need (Postfix, swaks, Sendmail's extracted tree),
# installed when missing; then every test, including the real-MTA ones.
# With the race detector, the daemon the tests start included (GOFLAGS
# reaches the go build inside cmd/snowrain's tests).
test: test-deps vet
	GOFLAGS="$(GOFLAGS) -race" $(GO) test -race -count=1 -timeout 30m ./...

test-deps:
	bash scripts/deps-postfix.sh
	bash scripts/deps-sendmail.sh
	bash scripts/deps-chromium.sh

vet:
	$(GO) vet ./...

bench: build
	mkdir -p $(VAR)
	$(GO) test -run "^$$" -bench StoreIngest -benchtime 500000x -count 3 ./measure/
	$(GO) test -run "^$$" -bench LogIngest -benchtime 3x ./measure/
	SNOWRAIN_BENCH_DB=$(VAR)/bench-10m.db $(GO) test -run "^$$" -bench Report10M -benchtime 5x -benchmem -timeout 30m ./report/
	$(GO) test -run "^$$" -bench Milter -benchtime 10000x -count 3 ./milter/
	$(GO) test -run "^$$" -bench Daemon50Conns -benchtime 20000x -count 3 ./cmd/snowrain/
	$(GO) test -run "^$$" -bench 'Socketmap|Inbound' -benchtime 200000x -count 3 ./policy/
	$(GO) test -run "^$$" -bench 'Grab$$|DNSPhase|HostSweep|ResolverSweep' -benchtime 5000x -count 3 ./scanner/
	$(GO) test -run "^$$" -bench 'MillionDomains|Permutation8' -benchtime 1x ./scanner/
	$(MAKE) bench-anchors bench-zgrab2

# The milter against the anchors in one run (issue 15): OpenDKIM 2.11 and
# OpenDMARC 1.4.2 chained as Postfix chains two smtpd_milters, then the
# snowrain binary just built, on the same generated corpus, DNS server and
# client; BENCHMARKS.md says what each daemon does and does not do.
BENCH_MSGS ?= 20000
bench-anchors: build
	bash scripts/deps-anchors.sh
	SNOWRAIN_BIN=$(CURDIR)/snowrain $(GO) test -run "^$$" -bench Anchors -benchtime $(BENCH_MSGS)x -timeout 30m ./internal/milterbench/

# zgrab2's CPU per STARTTLS grab against the scanner's, same server, same
# run, when zgrab2 can be built (into a scratch directory; none of its code
# is committed); otherwise the recorded figure.
bench-zgrab2:
	GO=$(GO) bash scripts/bench-zgrab2.sh

# A short fuzz pass over every parser we own (longer: FUZZTIME=5m).
FUZZTIME ?= 20s
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -f $(BIN)
