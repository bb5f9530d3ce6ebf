"""oras-py (0.2.43) push/pull of files, run as its own process so its RSS is measured alone.

    python benchmarks/oras_tool.py push HOST REPO:TAG FILE [FILE...]
    python benchmarks/oras_tool.py pull HOST REPO:TAG OUTDIR

Prints one JSON line on stdout: for push, the HTTP statuses oras got for each blob upload
(201 = really uploaded; 200 = oras's stand-in answer for "already present"); for pull, the
files written. oras-py does not check downloaded blobs against their digests.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    op, host, target, path, *more = argv
    import oras.client
    import oras.provider

    statuses: list[int] = []
    original = oras.provider.Registry.upload_blob

    def recording_upload_blob(self, blob, container, layer, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = original(self, blob, container, layer, *args, **kwargs)
        statuses.append(response.status_code)
        return response

    oras.provider.Registry.upload_blob = recording_upload_blob  # only observes, changes nothing

    client = oras.client.OrasClient(hostname=host, insecure=True)
    ref = f"{host}/{target}"
    if op == "push":
        client.push(target=ref, files=[path, *more], disable_path_validation=True, quiet=True)
        print(json.dumps({"uploadStatuses": statuses}))
    elif op == "pull":
        files = client.pull(target=ref, outdir=path)
        print(json.dumps({"files": files}))
    else:
        print(f"unknown op {op!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
