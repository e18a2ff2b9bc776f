# herokunix — everything runs from the Go module proxy and Debian's packages;
# nothing here assumes a hand-installed tool.
SHELL := /usr/bin/env bash
GO ?= go
IMG ?= ghcr.io/herokunix/herokunix:dev
VERSION ?= dev

.PHONY: all generate manifests verify vet test test-unit run build docker-build bench

all: build

## generate: deepcopy code from the API markers
generate:
	$(GO) tool controller-gen object paths=./api/...

## manifests: CRD and RBAC from the markers
manifests:
	$(GO) tool controller-gen crd rbac:roleName=herokunix-manager paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

## verify: generated files are current, code is formatted, vetted and staticcheck-clean
verify: generate manifests
	@test -z "$$(git status --porcelain -- api config/crd config/rbac/role.yaml)" || { git status --porcelain -- api config/crd config/rbac/role.yaml; git diff -- api config; echo "generated files are stale or uncommitted: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## test: unit and envtest suites, with real Nix, a real kube-apiserver and Heroku's own CLI, then the real-node
## suite on a single-node cluster it brings up and down (installs what they need when missing; the real node needs root)
test:
	hack/install-nix.sh
	hack/install-heroku-cli.sh >/dev/null
	set -o pipefail; pkgs="$$($(GO) list ./... | grep -v /test/realnode)" && \
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" HEROKUNIX_REQUIRE_NIX=1 HEROKUNIX_REQUIRE_HEROKU_CLI=1 $(GO) test -count=1 $$pkgs
	HEROKUNIX_REQUIRE_REALNODE=1 $(GO) test -count=1 -timeout 60m ./test/realnode

## run: the manager (cmd/manager, built fresh) against your cluster, or, with no cluster configured, against
## the embedded local default, which deploys the sample end to end (cmd/local: a developer tool, not in the image)
run:
	hack/install-nix.sh
	$(GO) run ./cmd/local $(ARGS)

## build: the manager binary, the one the image ships
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.Version=$(VERSION)" -o bin/manager ./cmd/manager

## docker-build: the controller image (needs a Docker engine)
docker-build:
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .
