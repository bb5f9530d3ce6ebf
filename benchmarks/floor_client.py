"""The sequential floor of benchmarks/latency.py: the fewest requests a push or pull needs, one
after another on ONE kept-alive http.client connection, digests computed beforehand (not timed).

    python benchmarks/floor_client.py push BASE_URL REPO:TAG PLAN.json
    python benchmarks/floor_client.py pull BASE_URL REPO:TAG OUTDIR

push: for the config and each file, ``POST /blobs/uploads/`` then ``PUT <location>?digest=``
with the bytes (distribution needs both), then ``PUT`` the manifest: 2 × (files + 1) + 1
requests. pull: ``GET`` the manifest, then ``GET`` each layer into OUTDIR under its title
(basename only): files + 1 requests. It verifies nothing (neither does curl). PLAN.json:
``{"files": [{"path", "name", "digest", "size"}]}``. Prints one JSON line: the requests sent.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
from urllib.parse import urlsplit

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/octet-stream"
CONFIG = "application/vnd.oci.empty.v1+json"
BLOCK = 1024 * 1024


class Floor:
    def __init__(self, base: str) -> None:
        self.base = urlsplit(base)
        self.conn = http.client.HTTPConnection(self.base.netloc, blocksize=BLOCK, timeout=600)
        self.requests = 0

    def send(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
             expect: tuple[int, ...] = (200,)) -> http.client.HTTPResponse:
        self.conn.request(method, path, body=body, headers=headers or {})  # type: ignore[arg-type]
        self.requests += 1
        response = self.conn.getresponse()
        if response.status not in expect:
            raise SystemExit(f"{method} {path} answered {response.status}: {response.read()[:300]!r}")
        return response

    def upload(self, repo: str, digest: str, size: int, body: object) -> None:
        started = self.send("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
        started.read()
        location = urlsplit(started.getheader("Location") or "")
        query = f"{location.query}&" if location.query else ""
        self.send("PUT", f"{location.path}?{query}digest={digest}", body,
                  {"Content-Type": LAYER, "Content-Length": str(size)}, expect=(201,)).read()

    def push(self, ref: str, plan_path: str) -> None:
        repo, tag = ref.rsplit(":", 1)
        with open(plan_path) as f:
            plan = json.load(f)
        config = b"{}"
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.upload(repo, config_digest, len(config), config)
        layers = []
        for item in plan["files"]:
            with open(item["path"], "rb") as f:
                self.upload(repo, item["digest"], item["size"], f)
            layers.append({"mediaType": LAYER, "digest": item["digest"], "size": item["size"],
                           "annotations": {"org.opencontainers.image.title": item["name"]}})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                               "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config)},
                               "layers": layers}).encode()
        self.send("PUT", f"/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": MANIFEST}, expect=(201,)).read()

    def pull(self, ref: str, outdir: str) -> None:
        repo, tag = ref.rsplit(":", 1)
        manifest = json.loads(self.send("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST}).read())
        os.makedirs(outdir, exist_ok=True)
        for layer in manifest["layers"]:
            name = os.path.basename(layer["annotations"]["org.opencontainers.image.title"])
            response = self.send("GET", f"/v2/{repo}/blobs/{layer['digest']}")
            with open(os.path.join(outdir, name), "wb") as f:
                while chunk := response.read(BLOCK):
                    f.write(chunk)


def main(argv: list[str]) -> int:
    op, base, ref, path = argv
    floor = Floor(base)
    if op == "push":
        floor.push(ref, path)
    elif op == "pull":
        floor.pull(ref, path)
    else:
        print(f"unknown op {op!r}", file=sys.stderr)
        return 2
    print(json.dumps({"requests": floor.requests}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
