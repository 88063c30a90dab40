#!/usr/bin/env bash
# Builds Kubernetes 1.20.2 (Debian's source package) once and caches the binaries in
# ~/.cache/meshlab/kube-1.20.2/bin, plus Debian's kubectl 1.20.2 extracted from kubernetes-client.
# MESHLAB_KUBE_BIN_DIR=<dir of ready binaries> skips all of this.
set -euo pipefail
CACHE="${MESHLAB_CACHE:-$HOME/.cache/meshlab}"
BIN="$CACHE/kube-1.20.2/bin"
TARGETS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

if [ -n "${MESHLAB_KUBE_BIN_DIR:-}" ]; then
  for t in "${TARGETS[@]}" kubectl; do
    [ -x "$MESHLAB_KUBE_BIN_DIR/$t" ] || { echo "MESHLAB_KUBE_BIN_DIR lacks $t" >&2; exit 1; }
  done
  echo "using binaries from $MESHLAB_KUBE_BIN_DIR"; exit 0
fi
mkdir -p "$BIN"

have_all=1
for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || have_all=0; done
if [ "$have_all" = 0 ]; then
  mkdir -p "$CACHE/src"
  cd "$CACHE/src"
  SRC=$(ls -d kubernetes-1.20*/ 2>/dev/null | head -1 || true)
  if [ -z "$SRC" ]; then
    apt-get source kubernetes
    SRC=$(ls -d kubernetes-1.20*/ | head -1)
  fi
  SRC="$CACHE/src/${SRC%/}"
  # The vendored reflect2 1.0.1 crashes (SIGSEGV) under Go >= 1.18 at the first custom-resource write.
  R2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -d "$R2" ] || { echo "missing $R2 (apt-get install golang-github-modern-go-reflect2-dev)" >&2; exit 1; }
  rm -rf "$SRC/vendor/github.com/modern-go/reflect2"
  cp -r "$R2" "$SRC/vendor/github.com/modern-go/reflect2"
  GOPATH="$CACHE/gopath"
  mkdir -p "$GOPATH/src/k8s.io"
  ln -sfn "$SRC" "$GOPATH/src/k8s.io/kubernetes"
  cd "$GOPATH/src/k8s.io/kubernetes"
  GOPATH="$GOPATH" GO111MODULE=off GOFLAGS=-mod=vendor \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kube-proxy"
  for t in "${TARGETS[@]}"; do
    f=$(ls _output/bin/$t _output/local/bin/linux/amd64/$t 2>/dev/null | head -1)
    install -m 0755 "$f" "$BIN/$t"
  done
fi

if [ ! -x "$BIN/kubectl" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download kubernetes-client && dpkg-deb -x kubernetes-client_*.deb x)
  install -m 0755 "$tmp/x/usr/bin/kubectl" "$BIN/kubectl"
  rm -rf "$tmp"
fi
echo "kubernetes binaries in $BIN"
