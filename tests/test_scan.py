"""The model safety scanner: finds dangerous pickle globals without ever unpickling.

Every hostile input is generated here at run time; stand-in ``torch``/``numpy``/``joblib``
modules are put in ``sys.modules`` only while pickling, to produce the bytes real files hold.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import bz2
import collections
import gzip
import io
import json
import lzma
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import tarfile
import types
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocimodel.errors import UsageError
from ocimodel.scan import classify, format_report, scan_bytes, scan_file, scan_path, scan_stream
from ocimodel.scan import _pickle, scanner

from pickle_helpers import SYSTEM, Reduce


def evil(marker: Path | None = None) -> Reduce:
    cmd = f"touch {marker}" if marker else "echo pwned"
    return Reduce(os.system, cmd)


def loaded_as(module: str, name: str) -> str:
    """What the unpickler imports for a name: protocols < 3 write Python 2 names
    (``__builtin__.eval``, ``commands.Popen``)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def calls(scan) -> set[str]:
    return {loaded_as(g.module, g.name) for g in scan.dangerous}


# -- raw pickles ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    "payload, expected",
    [
        (lambda: evil(), SYSTEM),
        (lambda: Reduce(builtins.eval, "1+1"), "builtins.eval"),
        (lambda: Reduce(subprocess.Popen, ["true"]), "subprocess.Popen"),
        (lambda: {"weights": [1.0, 2.0], "x": [evil()]}, SYSTEM),
        (lambda: [collections.OrderedDict(a=Reduce(builtins.exec, "pass"))], "builtins.exec"),
    ],
)
def test_malicious_pickles_are_flagged_at_every_protocol(protocol, payload, expected):
    scan = scan_bytes(pickle.dumps(payload(), protocol=protocol), "model.pkl")
    assert scan.format == "pickle"
    assert expected in calls(scan)
    assert scan.error is None
    assert not scan.safe_by_construction


def test_stack_global_resolved_through_memo():
    data = pickle.dumps([evil(), evil(), Reduce(os.system, "again")], protocol=4)
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert "STACK_GLOBAL" in ops and "MEMOIZE" in ops and "BINGET" in ops
    # Hand-made: the strings are memoised, then fetched back for a second STACK_GLOBAL.
    crafted = (
        b"\x80\x04\x8c\x08builtins\x94\x8c\x03len\x94\x93\x94"  # builtins.len, memo 0,1,2
        b"h\x00\x8c\x04exec\x94\x93"  # BINGET 0 ("builtins") + "exec" -> STACK_GLOBAL
        b"\x8c\x04pass\x85R."
    )
    scan = scan_bytes(crafted)
    assert calls(scan) == {"builtins.exec"}
    assert {g.call for g in scan.globals} == {"builtins.len", "builtins.exec"}
    assert calls(scan_bytes(data)) == {SYSTEM}


def test_stack_global_with_computed_names_is_dangerous():
    # module name produced by a call (str of a float): nothing tells what gets imported
    crafted = b"\x80\x04\x8c\x08builtins\x8c\x03str\x93G?\xf0\x00\x00\x00\x00\x00\x00\x85R\x8c\x01x\x93."
    scan = scan_bytes(crafted)
    assert [g.call for g in scan.dangerous] == ["<computed>.x"]
    assert "cannot tell" in scan.dangerous[0].reason


def test_safe_pickles_have_no_dangerous_or_unknown_globals():
    for obj in (collections.OrderedDict(a=1.0, b=[1, 2]), [1, 2.5, "x", None], {"w": [0.1] * 50}, {1, 2}, b"x" * 300):
        for protocol in (0, 2, 4, 5):
            scan = scan_bytes(pickle.dumps(obj, protocol=protocol), "state.pkl")
            assert scan.dangerous == [] and scan.unknown == [] and scan.error is None, (obj, protocol)
    scan = scan_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    assert [(g.call, g.verdict) for g in scan.globals] == [("collections.OrderedDict", "safe")]


class Custom:
    pass


def test_unknown_globals_are_listed_but_not_dangerous():
    report = scan_path_of({"model.pkl": pickle.dumps({"m": Custom()})})
    (scan,) = report.files
    assert scan.dangerous == [] and not report.dangerous
    assert [g.call for g in scan.unknown] == [f"{__name__}.Custom"]
    assert f"model.pkl: UNKNOWN {__name__}.Custom" in format_report(report)


def scan_path_of(files: dict[str, bytes]):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(data)
        return scan_path(Path(tmp))


def test_policy_classification():
    def verdict(module, name):
        dangerous, allowed, _ = classify(module, name)
        return "dangerous" if dangerous else "safe" if allowed else "unknown"

    assert verdict("os", "system") == verdict("os.path", "join") == "dangerous"
    assert verdict("__builtin__", "getattr") == verdict("builtins", "__import__") == "dangerous"
    assert verdict("operator", "attrgetter") == verdict("importlib", "import_module") == "dangerous"
    assert verdict("collections", "OrderedDict.__init__.__globals__") == "dangerous"
    assert verdict("torch._utils", "_rebuild_tensor_v2") == verdict("torch", "HalfStorage") == "safe"
    assert verdict("numpy.core.multiarray", "_reconstruct") == verdict("builtins", "set") == "safe"
    assert verdict("functools", "partial") == verdict("__main__", "Net") == "unknown"
    assert verdict("torch", "load") == "dangerous"


# -- PyTorch checkpoints ---------------------------------------------------------------------


@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-in ``torch`` modules, only so that pickle writes the names real checkpoints hold."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class Tensor:
    def __reduce__(self):
        from torch._utils import _rebuild_tensor_v2

        return _rebuild_tensor_v2, (StorageRef(), 0, (2, 2), (2, 1), False, collections.OrderedDict())


class StorageRef:
    pass


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):  # how torch.save refers to storages
        if isinstance(obj, StorageRef):
            return ("storage", sys.modules["torch"].FloatStorage, "0", "cpu", 4)
        return None


def torch_pickle(obj) -> bytes:
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def torch_zip(data_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/data/0", pickle.dumps(evil()))  # raw storage bytes: torch never unpickles them
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_pytorch_zip_with_safe_state_dict(fake_torch):
    scan = scan_bytes(torch_zip(torch_pickle(collections.OrderedDict(weight=Tensor()))), "model.pt")
    assert scan.format == "pytorch-zip"
    assert scan.error is None and scan.dangerous == [] and scan.unknown == []
    found = {(g.call, g.location) for g in scan.globals}
    assert ("torch._utils._rebuild_tensor_v2", "archive/data.pkl") in found
    assert ("torch.FloatStorage", "archive/data.pkl") in found


def test_pytorch_zip_with_malicious_data_pkl(fake_torch):
    scan = scan_bytes(torch_zip(torch_pickle({"weight": Tensor(), "hook": evil()})), "model.pt")
    assert [(g.call, g.location) for g in scan.dangerous] == [(SYSTEM, "archive/data.pkl")]
    assert "model.pt:archive/data.pkl: DANGEROUS " + SYSTEM in format_report(scan_report(scan))


def scan_report(*scans):
    from ocimodel.scan import ScanReport

    return ScanReport(list(scans))


def test_pickle_members_of_any_zip_are_scanned():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", "hello")
        z.writestr("nested/extra.bin", pickle.dumps(evil(), protocol=0))
    scan = scan_bytes(buf.getvalue(), "bundle.zip")
    assert scan.format == "zip"
    assert [(g.call, g.location) for g in scan.dangerous] == [(SYSTEM, "nested/extra.bin")]


def test_legacy_torch_formats(fake_torch):
    # torch < 1.6: magic, protocol, sys_info, the object, storage keys, then raw storage bytes
    parts = [pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})]
    sequence = b"".join(parts) + torch_pickle({"w": Tensor(), "x": evil()}) + pickle.dumps(["0"], protocol=2)
    scan = scan_bytes(sequence + b"\x00\xff" * 64, "old.pt")
    assert scan.format == "pytorch-pickle" and scan.error is None
    assert calls(scan) == {SYSTEM}
    # torch < 1.0: a tar of pickles
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("sys_info", parts[2]), ("pickle", pickle.dumps(evil(), protocol=2)), ("storages", parts[1])):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    scan = scan_bytes(buf.getvalue(), "older.pt")
    assert scan.format == "pytorch-legacy-tar"
    assert [(g.call, g.location) for g in scan.dangerous] == [(SYSTEM, "pickle")]


# -- joblib and compression -----------------------------------------------------------------


def test_pickle_followed_by_trailing_bytes_and_by_further_pickles():
    safe = pickle.dumps({"coef": [0.5, 1.5]}, protocol=4)
    scan = scan_bytes(safe + b"\x93NUMPY raw array bytes \x00\xff" * 10, "model.joblib")
    assert scan.format == "joblib" and scan.error is None and scan.dangerous == []
    scan = scan_bytes(safe + pickle.dumps(evil(), protocol=4) + b"\x00" * 16, "model.joblib")
    assert calls(scan) == {SYSTEM} and scan.error is None


@pytest.mark.parametrize(
    "kind, compress",
    [("zlib", zlib.compress), ("gzip", gzip.compress), ("bz2", bz2.compress), ("lzma", lzma.compress)],
)
def test_compressed_pickles_are_decompressed_and_scanned(kind, compress):
    scan = scan_bytes(compress(pickle.dumps({"clf": evil()}, protocol=4)), "model.joblib")
    assert scan.format == f"{kind}+joblib"
    assert calls(scan) == {SYSTEM} and scan.error is None


def test_lz4_is_reported_as_not_inspectable():
    scan = scan_bytes(b"\x04\x22\x4d\x18" + b"\x00" * 32, "model.joblib")
    assert scan.format == "lz4" and "cannot inspect" in scan.error and not scan.safe_by_construction


def test_decompression_is_capped(monkeypatch):
    monkeypatch.setattr(scanner, "MAX_DECOMPRESSED", 10_000)
    scan = scan_bytes(zlib.compress(b"\x80\x04" + b"N0" * 1_000_000), "bomb.pkl")
    assert "past" in scan.error


def test_zip_members_over_the_cap_are_not_opened(monkeypatch):
    monkeypatch.setattr(scanner, "MAX_MEMBER_BYTES", 1000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x00" * 100_000)
    scan = scan_bytes(buf.getvalue(), "bomb.pt")
    assert "too large to inspect" in scan.error


def test_opcode_count_is_capped(monkeypatch):
    monkeypatch.setattr(_pickle, "MAX_OPCODES", 500)
    scan = scan_bytes(pickle.dumps(list(range(10_000)), protocol=0), "big.pkl")
    assert "opcodes" in scan.error


@pytest.fixture
def fake_joblib(monkeypatch):
    """Stand-ins for ``numpy.dtype`` and joblib's array wrapper, as joblib.dump writes them."""
    numpy = types.ModuleType("numpy")
    joblib = types.ModuleType("joblib")
    numpy_pickle = types.ModuleType("joblib.numpy_pickle")
    numpy.dtype = type("dtype", (), {"__module__": "numpy"})
    numpy_pickle.NumpyArrayWrapper = type("NumpyArrayWrapper", (), {"__module__": "joblib.numpy_pickle"})
    for name, module in (("numpy", numpy), ("joblib", joblib), ("joblib.numpy_pickle", numpy_pickle)):
        monkeypatch.setitem(sys.modules, name, module)
    return numpy, numpy_pickle


class Array:
    def __init__(self, descr, values):
        self.descr, self.values = descr, values


def joblib_dump(obj, numpy, numpy_pickle) -> bytes:
    """joblib.numpy_pickle's layout: the wrapper pickled, then the raw array bytes, inline."""

    class Dtype:
        def __init__(self, descr):
            self.descr = descr

        def __reduce__(self):
            flags = 63 if self.descr == "O8" else 0
            return numpy.dtype, (self.descr, False, True), (3, "<", None, None, None, -1, -1, flags)

    class JoblibPickler(pickle._Pickler):
        def save(self, obj, save_persistent_id=True):
            if not isinstance(obj, Array):
                return super().save(obj, save_persistent_id)
            wrapper = numpy_pickle.NumpyArrayWrapper()
            wrapper.__dict__.update(
                shape=(len(obj.values),), order="C", dtype=Dtype(obj.descr), allow_mmap=True,
                numpy_array_alignment_bytes=16,
            )
            super().save(wrapper)
            self.framer.commit_frame(force=True)
            if obj.descr == "O8":
                pickle.dump(obj.values, self.file_handle, protocol=2)
                return
            pad = 16 - (self.file_handle.tell() + 1) % 16
            self.file_handle.write(bytes([pad]) + b"\xff" * pad + struct.pack(f"<{len(obj.values)}d", *obj.values))

    buf = io.BytesIO()
    pickler = JoblibPickler(buf, protocol=4)
    pickler.file_handle = buf
    pickler.dump(obj)
    return buf.getvalue()


def test_joblib_inline_arrays_are_stepped_over(fake_joblib):
    data = joblib_dump({"coef": Array("f8", [1.0, 2.0, 3.0]), "later": evil()}, *fake_joblib)
    plain = pickle.dumps({"later": evil()}, protocol=4)
    assert b"\xff" * 3 in data and len(data) > len(plain)
    scan = scan_bytes(data, "model.joblib")
    assert scan.error is None and scan.format == "joblib"
    assert calls(scan) == {SYSTEM}
    assert {g.call for g in scan.unknown} == set()  # numpy.dtype, the wrapper: allow-listed
    # an object array is a nested pickle: its globals are found too
    data = joblib_dump({"objs": Array("O8", [Reduce(builtins.eval, "0")]), "n": 1}, *fake_joblib)
    scan = scan_bytes(data, "model.joblib")
    assert scan.error is None and calls(scan) == {"builtins.eval"}


# -- safe-by-construction formats ------------------------------------------------------------


def safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00" * 8


def npy_bytes(descr: str, payload: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


@pytest.mark.parametrize(
    "name, data, fmt",
    [
        ("model.safetensors", safetensors_bytes(), "safetensors"),
        ("model.gguf", b"GGUF\x03\x00\x00\x00" + b"\x00" * 40, "gguf"),
        ("model.onnx", b"\x08\x07\x12\x07pytorch\x3a\x00", "onnx"),
        ("w.npy", npy_bytes("<f4", b"\x00\x00\x80\x3f"), "npy"),
        ("config.json", b'{"hidden_size": 8}', "json"),
        ("README.md", "# modèle\n".encode(), "text"),
    ],
)
def test_safe_formats_are_safe_by_construction(name, data, fmt):
    scan = scan_bytes(data, name)
    assert (scan.format, scan.safe_by_construction, scan.error, scan.globals) == (fmt, True, None, [])


def test_object_npy_holds_a_pickle_that_is_scanned():
    scan = scan_bytes(npy_bytes("|O", pickle.dumps([evil()], protocol=3)), "x.npy")
    assert scan.format == "npy+pickle" and calls(scan) == {SYSTEM} and not scan.safe_by_construction


def test_npz_of_plain_arrays_is_safe():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.npy", npy_bytes("<f8", b"\x00" * 8))
    scan = scan_bytes(buf.getvalue(), "arrays.npz")
    assert scan.format == "zip" and scan.safe_by_construction and scan.error is None


# -- hostile and broken input ---------------------------------------------------------------


def test_truncated_and_garbage_input_gives_errors_not_exceptions():
    data = pickle.dumps([evil(), list(range(100))], protocol=2)
    scan = scan_bytes(data[: len(data) // 2], "cut.pkl")
    assert scan.error and "pickle" in scan.error
    assert calls(scan) == {SYSTEM}  # what was read before the cut is still reported
    for blob in (b"\x80\x05\xff\xfe", b"\x80\x02}q\x00(X", b"PK\x03\x04broken zip", b"\x1f\x8b\x08garbage"):
        assert scan_bytes(blob, "x.pkl").error
    assert scan_bytes(os.urandom(64), "weights.pt").error
    unknown = scan_bytes(b"\x01\x02\x03\xfe" * 8, "blob.raw")
    assert unknown.format == "unknown" and not unknown.safe_by_construction


def test_scan_stream_of_pulled_blobs():
    blob = pickle.dumps(evil(), protocol=4)
    assert calls(scan_stream(io.BytesIO(blob), "blob")) == {SYSTEM}
    shifted = io.BytesIO(b"prefix" + blob)
    shifted.seek(6)
    assert calls(scan_stream(shifted, "blob")) == {SYSTEM}
    read, write = os.pipe()
    os.write(write, blob)
    os.close(write)
    with os.fdopen(read, "rb", buffering=0) as pipe:
        assert calls(scan_stream(pipe, "blob")) == {SYSTEM}


def test_directory_scan_names_files_and_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "model.safetensors").write_bytes(safetensors_bytes())
    (root / "sub" / "evil.pkl").write_bytes(pickle.dumps({"x": evil(marker)}, protocol=2))
    (root / "eval.pkl").write_bytes(pickle.dumps(Reduce(builtins.exec, f"open({str(marker)!r}, 'w')"), protocol=0))
    (root / ".git" / "hook.pkl").write_bytes(pickle.dumps(evil(marker)))
    (tmp_path / "outside.pkl").write_bytes(pickle.dumps(evil(marker)))
    (root / "link.pkl").symlink_to(tmp_path / "outside.pkl")
    (root / "inner-link.safetensors").symlink_to(root / "model.safetensors")

    report = scan_path(root)

    assert not marker.exists()
    by_path = {f.path: f for f in report.files}
    assert sorted(by_path) == ["eval.pkl", "inner-link.safetensors", "link.pkl", "model.safetensors", "sub/evil.pkl"]
    assert report.dangerous
    assert calls(by_path["sub/evil.pkl"]) == {SYSTEM} and calls(by_path["eval.pkl"]) == {"builtins.exec"}
    assert by_path["model.safetensors"].safe_by_construction
    assert by_path["inner-link.safetensors"].safe_by_construction
    assert "not followed" in by_path["link.pkl"].error and by_path["link.pkl"].globals == []
    text = format_report(report)
    assert f"sub/evil.pkl: DANGEROUS {SYSTEM}" in text and "eval.pkl: DANGEROUS __builtin__.exec" in text
    assert text.splitlines()[-1].startswith("DANGEROUS: 5 file(s) scanned: 2 dangerous")
    decoded = json.loads(json.dumps(report.to_dict()))
    assert decoded["dangerous"] is True
    assert {g["call"] for f in decoded["files"] for g in f["dangerous"]} == {SYSTEM, "__builtin__.exec"}


def test_single_file_and_missing_path(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps([1.0]))
    report = scan_path(path)
    assert [f.path for f in report.files] == ["m.pkl"] and not report.dangerous
    assert scan_file(path, "models/m.pkl").path == "models/m.pkl"
    with pytest.raises(UsageError):
        scan_path(tmp_path / "absent")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from([b"", b"\x80\x04", b"\x80\x02", b"PK\x03\x04", b"\x93NUMPY\x01\x00", b"x\x9c", b"c", b"("]),
    body=st.binary(max_size=512),
)
def test_random_bytes_never_raise(prefix, body):
    scan = scan_bytes(prefix + body, "fuzz.pkl")
    assert scan.format
