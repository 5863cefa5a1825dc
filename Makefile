# berth: see README.md. `make demo` runs the programs against a dev Consul
# agent on loopback; `make test` runs every test against real components.

GO            ?= go
CONSUL_VERSION := v1.21.0
GOPATH_FIRST  := $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))
CONSUL_BUILT  := $(GOPATH_FIRST)/berth-tools/consul-$(CONSUL_VERSION)/consul
CT_VERSION    := v0.41.1
PEERS_DIR     := $(GOPATH_FIRST)/berth-tools/peers
CT_BUILT      := $(PEERS_DIR)/consul-template-$(CT_VERSION)
PROGRAMS      := registrator templater envexec lockrun dnsforward
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -s -w -X github.com/berth/berth/pkg/version.Version=$(VERSION)
TEST_TIMEOUT  ?= 45m

export CONSUL_BIN ?= $(CONSUL_BUILT)
export CONSUL_TEMPLATE_BIN ?= $(CT_BUILT)

.PHONY: all build consul peers deps test test-short demo bench vet fmt clean $(PROGRAMS)

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

# The peers the differential tests run as oracles: consul-template, installed
# from the Go module proxy once into a place keyed by its version
# ($(CT_BUILT); $(PEERS_DIR)/consul-template is the same file, the name
# bench/templater.sh uses). Tests find it via CONSUL_TEMPLATE_BIN or that path.
peers: $(CT_BUILT)
$(CT_BUILT):
	@echo "installing consul-template $(CT_VERSION) into $(PEERS_DIR) (once; a few minutes)"
	@mkdir -p $(PEERS_DIR)
	@if [ -x $(PEERS_DIR)/consul-template ] && $(PEERS_DIR)/consul-template -version 2>&1 | grep -q "$(CT_VERSION:v%=%)"; then :; else \
		GOBIN=$(PEERS_DIR) GOTOOLCHAIN=local $(GO) install github.com/hashicorp/consul-template@$(CT_VERSION); fi
	cp $(PEERS_DIR)/consul-template $@.tmp && mv $@.tmp $@

# Debian packages the tests and benchmarks use (nginx, haproxy, dnsmasq, dig, dnsperf, busybox-static).
deps:
	@scripts/install-deps.sh

test: deps consul peers
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

demo: consul build
	@scripts/demo.sh

bench: deps consul build
	@for b in bench/*.sh; do echo "== $$b"; bash $$b || exit 1; done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
