# berth: see README.md. `make demo` runs the programs against a dev Consul
# agent on loopback; `make test` runs every test against real components.

GO            ?= go
# The pinned Consul: its one place is tools/consul/go.mod.
CONSUL_VERSION := $(shell sed -n 's|^[[:space:]]*github.com/hashicorp/consul \(v[0-9.]*\).*|\1|p' tools/consul/go.mod | head -1)
GOPATH_FIRST  := $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))
CONSUL_BUILT  := $(GOPATH_FIRST)/berth-tools/consul-$(CONSUL_VERSION)/consul
CT_VERSION    := v0.41.1
# consul-template, the templater tests' oracle, built static (it also runs
# in the FROM scratch images of the cluster fault tests).
CT_BUILT      := $(GOPATH_FIRST)/berth-tools/peers-static/consul-template-$(CT_VERSION)
PROGRAMS      := registrator templater envexec lockrun dnsforward
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT        ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -s -w -X github.com/berth/berth/pkg/version.Version=$(VERSION) -X github.com/berth/berth/pkg/version.Commit=$(COMMIT)
TEST_TIMEOUT  ?= 45m

export CONSUL_BIN ?= $(CONSUL_BUILT)
export CONSUL_TEMPLATE_BIN ?= $(CT_BUILT)

# consul-template, the peer the cluster fault tests run beside templater,
# built static (the cluster image has no libc), once per version.

STATICCHECK_VERSION := v0.8.2
STATICCHECK   := $(GOPATH_FIRST)/berth-tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck

.PHONY: all build consul consul-path peers images dist deps test test-short test-race test-cluster lint check-tree demo bench vet fmt clean $(PROGRAMS)

all: build

# Every program folder that has Go files builds bin/<name>, static.
build: $(PROGRAMS)
$(PROGRAMS):
	@if ls $@/*.go >/dev/null 2>&1; then \
		echo "build bin/$@"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/$@ ./$@; \
	fi

# The pinned Consul, built once (about 7 minutes) into a place keyed by its
# version that later runs and fresh clones reuse.
# The path is keyed by the version, so an existing build is never redone.
consul: $(CONSUL_BUILT)
$(CONSUL_BUILT):
	@echo "building Consul $(CONSUL_VERSION) into $@ (once; about 7 minutes)"
	@mkdir -p $(dir $@)
	cd tools/consul && CGO_ENABLED=0 $(GO) build -trimpath -o $@.tmp github.com/hashicorp/consul
	mv $@.tmp $@

consul-path:
	@echo $(CONSUL_BUILT)

# One image per program (berth/PROGRAM:VERSION and :latest) FROM scratch, and
# berth/consul from the pinned Consul: see scripts/images.sh.
images: consul
	@VERSION=$(VERSION) COMMIT=$(COMMIT) CONSUL_BIN=$(CONSUL_BUILT) scripts/images.sh

# Release archives for linux/amd64 and linux/arm64 with SHA256SUMS, in dist/.
DIST_ARCHES := amd64 arm64
dist:
	@rm -rf dist && mkdir -p dist
	@for arch in $(DIST_ARCHES); do \
		d=dist/berth-$(VERSION)-linux-$$arch; mkdir -p $$d; \
		for p in $(PROGRAMS); do \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$d/$$p ./$$p || exit 1; \
		done; \
		cp README.md ARCHITECTURE.md $$d/; \
		for p in $(PROGRAMS); do cp $$p/README.md $$d/README-$$p.md; done; \
		tar -C dist -czf $$d.tar.gz berth-$(VERSION)-linux-$$arch && rm -rf $$d; \
	done
	@cd dist && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

# The peers the differential tests run as oracles: consul-template, built
# static from the Go module proxy once into a place keyed by its version.
# Tests find it via CONSUL_TEMPLATE_BIN (exported above) or that path.
peers: $(CT_BUILT)
$(CT_BUILT):
	@echo "building consul-template $(CT_VERSION), static, into $@ (once; a few minutes)"
	@mkdir -p $(dir $@)/.build-$(CT_VERSION)
	CGO_ENABLED=0 GOBIN=$(dir $@)/.build-$(CT_VERSION) GOTOOLCHAIN=local $(GO) install -trimpath github.com/hashicorp/consul-template@$(CT_VERSION)
	mv $(dir $@)/.build-$(CT_VERSION)/consul-template $@

# Debian packages the tests and benchmarks use (nginx, haproxy, dnsmasq, dig, dnsperf, busybox-static).
deps:
	@scripts/install-deps.sh

test: deps consul peers check-tree lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The fast tier: unit tests only (no Consul, Docker or Debian packages).
test-short:
	$(GO) test -short -count=1 ./...

# The race detector over the packages with concurrent code and fast tests.
test-race:
	CGO_ENABLED=1 $(GO) test -race -short -count=1 ./pkg/... ./lockrun ./test/cluster

vet:
	$(GO) vet ./...

# staticcheck, pinned and built once from the Go module proxy.
lint: vet $(STATICCHECK)
	$(STATICCHECK) ./...
$(STATICCHECK):
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) GOTOOLCHAIN=local $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# No binary and nothing over 1 MB tracked in git.
check-tree:
	@scripts/check-tree.sh

# The long cluster fault campaign (not in CI): RUNS partition runs and RUNS/3
# leader kills, for lockrun and consul lock, on a 3-server cluster in Docker.
RUNS ?= 30
test-cluster: deps consul
	CLUSTER_RUNS=$(RUNS) $(GO) test -count=1 -timeout 0 -v -run 'TestCampaign' ./test/cluster

demo: consul build
	@scripts/demo.sh

bench: deps consul build
	@for b in bench/*.sh; do echo "== $$b"; bash $$b || exit 1; done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
