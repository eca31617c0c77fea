# lwm2md — LwM2M device-management server. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
MODULES := sdk ddf core
# go test flags; CI may add -race or -v
TESTFLAGS ?= -count=1 -timeout 25m
LWM2MD_FLAGS ?=

.PHONY: help build run test test-deps bench fuzz lint gen decoders clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/lwm2md (server) and bin/lwm2m-sim (simulator)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/lwm2md ./core/cmd/lwm2md
	$(GO) build -o $(BIN)/lwm2m-sim ./core/cmd/lwm2m-sim

run: build ## run the server on the embedded store (./data), no other service needed
	@mkdir -p data
	$(BIN)/lwm2md $(LWM2MD_FLAGS)

test-deps: ## make sure Redis answers on 127.0.0.1:6379 and libcoap's clients are installed
	@bash scripts/test-deps.sh

test: test-deps ## run every test, including those against real Redis and libcoap
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) vet ./...) || exit 1; done
	@set -o pipefail; $(GO) test -json $(TESTFLAGS) $(addprefix ./,$(addsuffix /...,$(MODULES))) | GOWORK=off $(GO) run scripts/testsummary/main.go

bench: test-deps build ## print the benchmark figures named by the issues
	@bash scripts/bench.sh

fuzz: ## run every fuzz target for FUZZTIME each (default 15s)
	@bash scripts/fuzz.sh $${FUZZTIME:-15s}

lint: ## gofmt, go vet and staticcheck (pion's deprecated Config form is used on purpose)
	@test -z "$$(gofmt -l $(MODULES))" || { gofmt -l $(MODULES); echo "gofmt needed"; exit 1; }
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done
	@for m in $(MODULES); do (cd $$m && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -checks inherit,-SA1019 ./...) || exit 1; done

clean: ## remove build output
	rm -rf $(BIN)
