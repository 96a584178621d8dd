# snowrain: see README.md. Two commands matter: `make run` and `make test`.
GO      ?= go
BIN     := ./snowrain
VAR     := $(CURDIR)/var
DNS     ?=
DNSFLAG := $(if $(DNS),--dns $(DNS),)

# The version comes from git (scripts/version.sh), stamped into the binary.
VERSION ?= $(shell sh scripts/version.sh)
LDFLAGS := -X main.version=$(VERSION)

# make install: PREFIX=/usr/local by default, DESTDIR for staging.
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system

# make deb: dist/snowrain_VERSION_ARCH.deb, built with nfpm (go tool nfpm).
DIST     ?= dist
DEB_ARCH ?= $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)
DEB      := $(DIST)/snowrain_$(VERSION)_$(DEB_ARCH).deb

.PHONY: all build man install deb run test test-deps unit e2e bench bench-anchors bench-zgrab2 fuzz vet lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/snowrain

# snowrain(8), generated from the binary's own -h texts.
man: build
	mkdir -p build
	$(GO) run ./packaging/mangen $(BIN) > build/snowrain.8

# The binary, man page, units (ExecStart pointing at PREFIX), tmpfiles.d
# and sysusers.d entries, and the sample configuration unless one exists.
# The snowrain user: systemd-sysusers (or the package's postinst).
install: build man
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/snowrain
	install -D -m 0644 build/snowrain.8 $(DESTDIR)$(PREFIX)/share/man/man8/snowrain.8
	install -d $(DESTDIR)$(UNITDIR)
	for u in snowrain.service snowrain-report.service snowrain-report.timer; do \
		sed 's|/usr/bin/snowrain|$(PREFIX)/bin/snowrain|g' contrib/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; done
	install -D -m 0644 packaging/snowrain.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/snowrain.conf
	install -D -m 0644 packaging/snowrain.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/snowrain.conf
	test -e $(DESTDIR)$(SYSCONFDIR)/snowrain/snowrain.conf || \
		install -D -m 0644 contrib/snowrain.conf $(DESTDIR)$(SYSCONFDIR)/snowrain/snowrain.conf

deb:
	rm -rf build/deb
	mkdir -p build/deb $(DIST)
	$(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o build/deb/snowrain ./cmd/snowrain
	$(GO) run ./packaging/mangen build/deb/snowrain | gzip -9n > build/deb/snowrain.8.gz
	cp contrib/systemd/snowrain.service contrib/systemd/snowrain-report.service build/deb/
	VERSION=$(VERSION) ARCH=$(DEB_ARCH) $(GO) tool nfpm package \
		--config packaging/nfpm.yaml --packager deb --target $(DEB)
	@echo "built $(DEB)"

# The daemon on an embedded SQLite default in ./var/, milter on a local
# socket; it prints the main.cf lines to paste.
run: build
	mkdir -p $(VAR)
	$(BIN) serve --config $(CURDIR)/contrib/snowrain.dev.conf \
		--milter inet:127.0.0.1:8891 --db $(VAR)/snowrain.db --metrics 127.0.0.1:9425 $(DNSFLAG)

# Everything the tests need (Postfix, swaks, Sendmail's extracted tree,
# gcc and libseccomp-dev for the unit's syscall filter, PostgreSQL's
# server for the throwaway clusters of internal/pgtest), installed when
# missing; then every test, including the real-MTA ones.
# With the race detector, the daemon the tests start included (GOFLAGS
# reaches the go build inside cmd/snowrain's tests).
# Around the run, scripts/mta-state.sh checks that the machine's own Postfix
# (a contributor's live mail server) is left running, on its ports, with
# /etc/postfix unchanged; make test fails if not.
test: test-deps lint
	@mkdir -p build
	bash scripts/mta-state.sh save build/mta-state.before
	GOFLAGS="$(GOFLAGS) -race" $(GO) test -race -count=1 -timeout 30m ./...; rc=$$?; \
		(cd third_party/go-milter && $(GO) test -race -count=1 ./...) || rc=1; \
		(cd third_party/go-msgauth && $(GO) test -race -count=1 ./...) || rc=1; \
		bash scripts/mta-state.sh check build/mta-state.before || rc=1; exit $$rc

test-deps:
	bash scripts/deps-postfix.sh
	bash scripts/deps-seccomp.sh
	bash scripts/deps-sendmail.sh
	bash scripts/deps-chromium.sh
	bash scripts/deps-reports.sh
	bash scripts/deps-postgres.sh

vet:
	$(GO) vet ./...

# go vet, staticcheck (pinned in go.mod's tool block: go tool staticcheck),
# gofmt and go mod tidy: make test fails when any of them finds something.
# third_party/ is left out of gofmt and staticcheck: the patched library
# copies stay as close to upstream as possible. They are modules of their
# own, so ./... does not reach them; scripts/gofmt-check.sh skips them.
lint: vet
	$(GO) tool staticcheck ./...
	GO=$(GO) sh scripts/gofmt-check.sh
	$(GO) mod tidy -diff

bench: build
	mkdir -p $(VAR)
	$(GO) test -run "^$$" -bench StoreIngest -benchtime 500000x -count 3 ./measure/
	$(GO) test -run "^$$" -bench LogIngest -benchtime 3x ./measure/
	SNOWRAIN_BENCH_DB=$(VAR)/bench-10m.db $(GO) test -run "^$$" -bench Report10M -benchtime 5x -benchmem -timeout 30m ./report/
	$(GO) test -run "^$$" -bench Milter -benchtime 10000x -count 3 ./milter/
	$(GO) test -run "^$$" -bench FoldedHeader -benchtime 5x -count 3 ./milter/
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
	rm -rf $(BIN) build $(DIST)
