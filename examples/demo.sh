#!/usr/bin/env bash
# The `make demo` walk-through: a throwaway registry on 127.0.0.1, then push, inspect, tags,
# scan, sign, verify, promote and a verified pull (twice: the second is a no-op), and a
# byte-for-byte check of the example model. Stops what it started.
set -euo pipefail

BIN="${BIN:-.venv/bin}"
MODEL="examples/model"
WORK="$(mktemp -d)"
PORT="$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
REGISTRY="127.0.0.1:$PORT"
REGISTRY_PID=""

cleanup() {
  if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $WORK/storage}
  delete: {enabled: true}
http: {addr: $REGISTRY}
YAML
docker-registry serve "$WORK/config.yml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 1 50); do
  curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$REGISTRY/v2/" >/dev/null || { echo "registry did not start:"; cat "$WORK/registry.log"; exit 1; }
echo "== registry running at $REGISTRY (storage in $WORK/storage)"

export OCIMODEL_PLAIN_HTTP=1
export DOCKER_CONFIG="$WORK/docker"   # never touch the user's real credentials

step() { echo; echo "\$ $(printf "%q " "$@")"; "$@"; }

step "$BIN/ocimodel" push "$MODEL" "$REGISTRY/demo/iris:1.0" \
  --description "Tiny iris classifier" --framework pytorch --format safetensors \
  --license Apache-2.0 --author "Demo Team" --metric accuracy=0.96 --param epochs=20 \
  --dataset "https://archive.ics.uci.edu/dataset/53/iris"
step "$BIN/ocimodel" push "$MODEL" "$REGISTRY/demo/iris:latest"
step "$BIN/ocimodel" inspect "$REGISTRY/demo/iris:1.0"
step "$BIN/ocimodel" tags "$REGISTRY/demo/iris"
step "$BIN/ocimodel" scan "$MODEL"
export OCIMODEL_KEY_PASSWORD=demo-password   # for the throwaway key below
step "$BIN/ocimodel" keygen --output-prefix "$WORK/demo"
step "$BIN/ocimodel" sign "$REGISTRY/demo/iris:1.0" --key "$WORK/demo.key"
step "$BIN/ocimodel" verify "$REGISTRY/demo/iris:1.0" --key "$WORK/demo.pub"
step "$BIN/ocimodel" promote "$REGISTRY/demo/iris:1.0" prod --reason "demo release" --key "$WORK/demo.pub"
step "$BIN/ocimodel" stages "$REGISTRY/demo/iris"
step "$BIN/ocimodel" pull "$REGISTRY/demo/iris:prod" "$WORK/pulled" --key "$WORK/demo.pub"
step "$BIN/ocimodel" pull "$REGISTRY/demo/iris:prod" "$WORK/pulled" --key "$WORK/demo.pub"

echo
echo "== comparing pulled files with $MODEL"
diff -r -x '.ocimodel*' "$MODEL" "$WORK/pulled"
echo "OK: every file identical, signature verified, every byte checked against its sha256"
