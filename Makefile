# walhook: the usual tasks. `make test` is what CI runs.
GO ?= go
FUZZTIME ?= 200000x

.PHONY: build image test fuzz bench demo
build:
	$(GO) build -o bin/walhook ./cmd/walhook

# The container image (Dockerfile), its version stamped from git.
image:
	docker build --build-arg VERSION=$$(git describe --tags --always --dirty) -t walhook .

test:
	$(GO) test -count=1 -timeout 45m ./...

# Each fuzz target for FUZZTIME, a count of inputs: a duration makes the fuzz
# coordinator fail with "context deadline exceeded" on a busy machine.
# Crashers land in testdata/fuzz and become regression cases of the tests.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./cmd/walhook/internal/config/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./dispatch/signature/
	$(GO) test -run '^$$' -fuzz '^FuzzRenderValue$$' -fuzztime $(FUZZTIME) ./cdc/
	$(GO) test -run '^$$' -fuzz '^FuzzRenderArray$$' -fuzztime $(FUZZTIME) ./cdc/
	$(GO) test -run '^$$' -fuzz '^FuzzValidJSONB$$' -fuzztime $(FUZZTIME) ./cdc/
	$(GO) test -run '^$$' -fuzz '^FuzzParseChange$$' -fuzztime $(FUZZTIME) ./cdc/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./cdc/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTableName$$' -fuzztime $(FUZZTIME) ./cdc/

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

demo:
	$(GO) run ./cmd/walhook demo
