#!/usr/bin/env bash
# Builds the tools the deployment checks use from their Go modules, once per version, into a cache
# outside the repository (OPSAT_CACHE, default ~/.cache/opsat). Needs Go; the module proxy is Go's own
# setting (GOPROXY), never named here.
#   tools.sh build [tool...]   build what is missing (default: all)
#   tools.sh cached [tool...]  exit 0 when all are built already (nothing is built)
#   tools.sh path <tool>       print the binary's path
#   tools.sh crds              fetch the CRD files into the cache, print their folder
set -euo pipefail

CACHE="${OPSAT_CACHE:-$HOME/.cache/opsat}/tools"
ETCD_VERSION=v3.7.3
KUBE_VERSION=v1.34.3
PROMETHEUS_VERSION=v0.316.0
HELM_VERSION=v3.22.0
CNPG_VERSION=v1.27.1
PROMETHEUS_OPERATOR_VERSION=v0.87.1
ALL=(helm promtool etcd kube-apiserver)

version_of() {
  case "$1" in
    helm) echo "$HELM_VERSION" ;;
    promtool) echo "$PROMETHEUS_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver) echo "$KUBE_VERSION" ;;
    *) echo "unknown tool: $1" >&2; exit 2 ;;
  esac
}

path_of() { echo "$CACHE/$1-$(version_of "$1")/$1"; }

log() { echo "[tools] $*" >&2; }

# Built into a temporary folder and moved in place at the end: a half-built tool never counts as cached.
build_one() {
  local tool="$1" version out tmp start
  version="$(version_of "$tool")"
  out="$(path_of "$tool")"
  [[ -x "$out" ]] && return 0
  command -v go >/dev/null || { echo "Go is needed to build $tool" >&2; exit 1; }
  tmp="$(mktemp -d)"
  start=$SECONDS
  log "building $tool $version (first time only; minutes on a small machine)"
  case "$tool" in
    helm)
      GOBIN="$tmp" go install "helm.sh/helm/v3/cmd/helm@$version" ;;
    promtool)
      GOBIN="$tmp" go install "github.com/prometheus/prometheus/cmd/promtool@$version" ;;
    etcd)
      # `go install go.etcd.io/etcd/server/v3@...` is refused (replace directives): a wrapper module.
      mkdir "$tmp/src"
      cat > "$tmp/src/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
      (cd "$tmp/src" && go mod init opsat.local/etcd >/dev/null 2>&1 \
        && go get "go.etcd.io/etcd/server/v3@$version" "go.etcd.io/etcd/api/v3@$version" \
             "go.etcd.io/etcd/client/v3@$version" "go.etcd.io/etcd/client/pkg/v3@$version" \
             "go.etcd.io/etcd/pkg/v3@$version" \
        && go mod tidy && go build -o "$tmp/etcd" .) ;;
    kube-apiserver)
      # The kubernetes module points at ./staging through replace lines; use the published modules.
      local dir minor="${version#v1.}"
      dir="$(module_dir "k8s.io/kubernetes@$version")"
      cp -r "$dir" "$tmp/src" && chmod -R u+w "$tmp/src"
      (cd "$tmp/src" && rm -rf vendor go.work go.work.sum \
        && sed -i -e '/=> \.\/staging/d' -e "s#^\(\s*k8s.io/[a-z0-9-]*\) v0.0.0\$#\1 v0.${minor}#" go.mod \
        && GOWORK=off GOFLAGS=-mod=mod go build -p 2 -o "$tmp/kube-apiserver" -ldflags "-s -w \
             -X k8s.io/component-base/version.gitVersion=$version \
             -X k8s.io/component-base/version.gitMajor=1 \
             -X k8s.io/component-base/version.gitMinor=${minor%%.*}" ./cmd/kube-apiserver) ;;
  esac
  mkdir -p "$(dirname "$out")"
  mv "$tmp/$tool" "$out"
  rm -rf "$tmp"
  log "built $tool $version in $((SECONDS - start)) s"
}

# CRDs of the operators the manifests use, taken from the operators' own Go modules.
module_dir() { go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'; }
crds() {
  local out="$CACHE/crds-cnpg-$CNPG_VERSION-po-$PROMETHEUS_OPERATOR_VERSION" tmp dir
  if [[ ! -f "$out/.complete" ]]; then
    tmp="$(mktemp -d)"
    dir="$(module_dir "github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION")"
    cp "$dir"/config/crd/bases/postgresql.cnpg.io_*.yaml "$tmp/"
    dir="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
    cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_{prometheusrules,podmonitors}.yaml "$tmp/"
    chmod u+w "$tmp"/* && touch "$tmp/.complete"
    rm -rf "$out" && mkdir -p "$CACHE" && mv "$tmp" "$out"
  fi
  echo "$out"
}

cmd="${1:-build}"; shift || true
tools=("$@"); [[ ${#tools[@]} -gt 0 ]] || tools=("${ALL[@]}")
case "$cmd" in
  build) for t in "${tools[@]}"; do build_one "$t"; done ;;
  cached) for t in "${tools[@]}"; do [[ -x "$(path_of "$t")" ]] || exit 1; done ;;
  path) path_of "${tools[0]}" ;;
  crds) crds ;;
  *) echo "usage: $0 build|cached|path|crds [tool...]" >&2; exit 2 ;;
esac
