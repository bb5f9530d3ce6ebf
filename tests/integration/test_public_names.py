"""Every public name stays what it is documented to be, whatever has been imported: a submodule
named like a lazy public verb once replaced ``ocimodel.verify`` by a module after any push."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

import ocimodel
from ocimodel.registry.connection import Connection
from ocimodel.signing.keys import generate_keypair
from ocimodel.signing.policy import VerificationPolicy


def test_public_names_survive_push_pull_verify_and_every_import(registry, repo, tmp_path, docker_config, monkeypatch):
    before = {name: getattr(ocimodel, name) for name in ocimodel._LAZY}
    private, public = generate_keypair(tmp_path / "k", b"pw")
    monkeypatch.setenv("OCIMODEL_KEY_PASSWORD", "pw")
    model = tmp_path / "m.bin"
    model.write_bytes(os.urandom(1000))
    ref = f"{registry.host}/{repo}:1"
    plain = Connection(plain_http=True)
    pushed = ocimodel.push(model, ref, connection=plain, code=False)
    ocimodel.pull(ref, tmp_path / "out", connection=plain)
    ocimodel.sign(ref, connection=plain, key=private, interactive=False)
    verified = ocimodel.verify(ref, VerificationPolicy(keys=(str(public),)), connection=plain)
    assert verified.digest == pushed.digest
    for module in pkgutil.walk_packages(ocimodel.__path__, "ocimodel."):
        if module.name != "ocimodel.__main__":
            importlib.import_module(module.name)
    for name, value in before.items():
        now = getattr(ocimodel, name)
        assert now is value and not inspect.ismodule(now), f"ocimodel.{name} is now {now!r}"
        assert now is getattr(importlib.import_module(ocimodel._LAZY[name]), name)
