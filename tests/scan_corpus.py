"""The scanner's corpus: malicious files built here byte by byte (never unpickled), benign
files made by the real libraries (tests/data/scan/benign, see benchmarks/make_scan_corpus.py).

Used by tests/test_scan.py (every malicious file must be refused, benign ones pass) and by
benchmarks/scan.py (the same corpus through ocimodel, picklescan, modelscan and fickling).
Each malicious entry says which class of attack it stands for.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENIGN_DIR = Path(__file__).parent / "data" / "scan" / "benign"

#: Benign files ocimodel is known to refuse, with why (the false-positive budget is 2).
KNOWN_FALSE_POSITIVES: dict[str, str] = {}


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    kind: str  # the class of attack


# -- building blocks (protocol-0 text and protocol-4 binary opcodes) ----------------------------


def g(module: str, name: str) -> bytes:
    """GLOBAL module.name"""
    return f"c{module}\n{name}\n".encode()


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL from two short strings (protocol 4)."""
    return s4(module) + s4(name) + b"\x93"


def s0(text: str) -> bytes:
    return f"V{text}\n".encode()


def s4(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) with REDUCE."""
    return func + b"(" + b"".join(args) + b"tR"


def p0(body: bytes) -> bytes:
    return body + b"."


def p4(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


class Reduce:
    """An object whose unpickling would call ``func(*args)`` (pickled, never loaded)."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, ...]:
        return self.func, self.args


def dumps(obj: object, protocol: int = 4) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


SYSTEM = call(g("os", "system"), s0("id"))
EVIL = p0(SYSTEM)
EVIL4 = p4(sg("os", "system") + s4("id") + b"\x85R")


def zip_bytes(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    import warnings

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted here
        for name, data in members:
            z.writestr(name, data)
    return out.getvalue()


def torch_zip(data_pkl: bytes, extra: list[tuple[str, bytes]] = ()) -> bytes:  # type: ignore[assignment]
    return zip_bytes([("archive/data.pkl", data_pkl), ("archive/version", b"3\n"), *extra])


def tar_bytes(members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def v7_tar(data: bytes) -> bytes:
    """The same tar without the 'ustar' magic (old v7 headers), checksums redone."""
    out = bytearray(data)
    for at in range(0, len(out) - 512, 512):
        block = out[at : at + 512]
        if block[257:262] == b"ustar":
            block[257:265] = b"\0" * 8
            block[148:156] = b" " * 8
            block[148:155] = b"%06o\0" % sum(block)
            out[at : at + 512] = block
    return bytes(out)


def npy(descr: object, payload: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def safetensors(header: dict[str, object], data: bytes) -> bytes:
    import json

    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _rename_in_local_header(data: bytes, old: bytes, new: bytes) -> bytes:
    """Change a member's name in its local header only (same length), not in the central directory."""
    at = data.index(b"PK\x03\x04")
    while at >= 0:
        n = struct.unpack("<H", data[at + 26 : at + 28])[0]
        if data[at + 30 : at + 30 + n] == old:
            return data[: at + 30] + new + data[at + 30 + n :]
        at = data.find(b"PK\x03\x04", at + 4)
    raise ValueError(old)


def _patch_headers(data: bytes, local_offset: int, central_offset: int, value: Callable[[int], int]) -> bytes:
    """Rewrite one 2-byte field of every local and central header: ``value(old) -> new``."""
    out = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = out.find(sig)
        while at >= 0:
            old = struct.unpack("<H", out[at + offset : at + offset + 2])[0]
            out[at + offset : at + offset + 2] = struct.pack("<H", value(old))
            at = out.find(sig, at + 4)
    return bytes(out)


def _set_flag(data: bytes, bit: int) -> bytes:
    return _patch_headers(data, 6, 8, lambda flags: flags | bit)


def _set_method(data: bytes, method: int) -> bytes:
    return _patch_headers(data, 8, 10, lambda _: method)


def _hidden_member_zip() -> bytes:
    """A local entry for an evil pickle that the central directory does not list."""
    hidden = zip_bytes([("archive/data.pkl", EVIL)])
    hidden = hidden[: hidden.index(b"PK\x01\x02")]  # local header + data only
    visible = zip_bytes([("archive/data.pkl", dumps({"w": 1}))])
    cd = visible.index(b"PK\x01\x02")
    body = visible[:cd] + hidden
    # the central directory and end record of `visible`, its offset moved past the hidden entry
    tail = bytearray(visible[cd:])
    end = tail.index(b"PK\x05\x06")
    tail[end + 16 : end + 20] = struct.pack("<I", len(body))
    return body + bytes(tail)


def _overlapping_zip() -> bytes:
    """Two central directory entries pointing at the same local entry."""
    data = zip_bytes([("archive/data.pkl", EVIL), ("archive/version", b"3\n")])
    cd = data.index(b"PK\x01\x02")
    second = data.index(b"PK\x01\x02", cd + 4)
    out = bytearray(data)
    out[second + 42 : second + 46] = out[cd + 42 : cd + 46]  # same local header offset
    return bytes(out)


def overlap_bomb(entries: int, size: int) -> bytes:
    """A zip whose central directory lists one deflated member of ``size`` zeros ``entries``
    times (the overlapping-entries zip bomb; one name, so zipfile reads every entry)."""
    one = zip_bytes([("m000.pkl", b"\x80\x04" + b"\x00" * size)], zipfile.ZIP_DEFLATED)
    cd = one.index(b"PK\x01\x02")
    end = one.index(b"PK\x05\x06")
    entry = one[cd:end]
    entries_raw = entry * entries
    eocd = bytearray(one[end:])
    eocd[8:10] = eocd[10:12] = struct.pack("<H", entries)
    eocd[12:16] = struct.pack("<I", len(entries_raw))
    return one[:cd] + entries_raw + bytes(eocd)


def _bad_crc_zip() -> bytes:
    data = bytearray(zip_bytes([("archive/data.pkl", EVIL)]))
    at = data.index(EVIL)
    data[at + 5] ^= 0x01  # 'os' -> 'nr'... any flip: the CRC no longer matches
    return bytes(data)


def _nested_zip(depth: int) -> bytes:
    data = EVIL
    for level in range(depth):
        data = zip_bytes([(f"level{level}.pkl" if level == 0 else f"level{level}.zip", data)])
    return data


def _joblib_frame_desync() -> bytes:
    """A joblib-style wrapper whose 'array bytes' are opcodes to pickle.load (C unpickler)
    but data to joblib: the array holds os.system for whoever pickle.loads the file."""
    state = (
        b"}(" + s4("shape") + b"K\x01\x85" + s4("order") + s4("C") + s4("dtype")
        + call(sg("numpy", "dtype"), s4("u1"), b"\x89\x88") + b")b"
        + s4("subclass") + sg("numpy", "ndarray") + b"u"
    )
    wrapper = sg("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81" + state + b"b"
    # joblib reads 1 array byte after BUILD; pickle.load reads opcodes there instead
    return b"\x80\x04" + wrapper + b"0" + sg("os", "system") + s4("id") + b"\x85R."


def malicious() -> list[Sample]:
    """Every malicious sample (name, bytes, class)."""
    out: list[Sample] = []

    def add(kind: str, name: str, data: bytes) -> None:
        out.append(Sample(name, data, kind))

    # raw pickles that run code, every protocol
    for proto in range(6):
        add("raw-pickle", f"os_system_p{proto}.pkl", dumps(Reduce(os.system, "id"), proto))
    add("raw-pickle", "eval.pkl", dumps(Reduce(eval, "1+1"), 2))
    add("raw-pickle", "exec_nested.pt", dumps({"w": [1.0], "hook": [Reduce(exec, "pass")]}, 4))
    add("raw-pickle", "popen.bin", dumps(Reduce(__import__("subprocess").Popen, ["id"]), 3))
    add("raw-pickle", "inst_opcode.pkl", b"(S'id'\nios\nsystem\n.")
    add("raw-pickle", "obj_opcode.pkl", b"(cos\nsystem\nS'id'\no.")
    add("raw-pickle", "newobj_ex.pkl", p4(sg("subprocess", "Popen") + b"]" + s4("id") + b"a\x85}\x92"))
    add("raw-pickle", "no_suffix_model", EVIL)
    # names reached through attribute chains and Python 2 spellings
    add("attribute-chain", "posixpath_os.pkl", p4(sg("posixpath", "os.system") + s4("id") + b"\x85R"))
    add("attribute-chain", "random_os.pkl", p4(sg("random", "_os.system") + s4("id") + b"\x85R"))
    add("attribute-chain", "torch_serialization_os.pt", p4(sg("torch.serialization", "os.system") + s4("id") + b"\x85R"))
    add("attribute-chain", "dunder_globals.pkl", p4(sg("collections", "OrderedDict.__init__.__globals__") + b"."))
    add("attribute-chain", "py2_builtin_eval.pkl", b"\x80\x02" + call(g("__builtin__", "eval"), s0("1")) + b".")
    add("attribute-chain", "py2_commands.pkl", b"\x80\x02" + call(g("commands", "getoutput"), s0("id")) + b".")
    # gadgets: getattr-style, nested loaders, writers, extractors, launchers
    getattr_os = call(g("builtins", "getattr"), g("posixpath", "os"), s0("system"))
    add("gadget", "getattr.pkl", p0(call(getattr_os, s0("id"))))
    add("gadget", "getattr_enum_like_on_os.pkl", p0(call(g("builtins", "getattr"), g("posixpath", "os"), s0("sep"))))
    add("gadget", "attrgetter.pkl", p0(call(call(g("operator", "attrgetter"), s0("system")), g("posixpath", "os"))))
    add("gadget", "methodcaller.pkl", p0(call(call(g("operator", "methodcaller"), s0("system"), s0("id")), g("posixpath", "os"))))
    add("gadget", "partial.pkl", p0(call(call(g("functools", "partial"), g("os", "system"), s0("id")))))
    add("gadget", "pydoc_locate.pkl", p0(call(call(g("pydoc", "locate"), s0("os.system")), s0("id"))))
    add("gadget", "import_module.pkl", p0(call(g("importlib", "import_module"), s0("antigravity"))))
    add("gadget", "builtins_import.pkl", p0(call(g("builtins", "__import__"), s0("antigravity"))))
    add("gadget", "pickle_loads.pkl", p4(sg("pickle", "loads") + b"C" + bytes([len(EVIL)]) + EVIL + b"\x85R"))
    add("gadget", "numpy_load.pkl", p0(call(g("numpy", "load"), s0("/tmp/x.npy"), g("builtins", "True"))))
    add("gadget", "joblib_load.pkl", p0(call(g("joblib", "load"), s0("/tmp/x.joblib"))))
    add("gadget", "torch_load.pkl", p0(call(g("torch", "load"), s0("/tmp/x.pt"))))
    add("gadget", "torch_jit_load.pt", torch_zip(p0(call(g("torch.jit", "load"), s0("/tmp/x.pt")))))
    add("gadget", "pandas_read_pickle.pkl", p0(call(g("pandas", "read_pickle"), s0("/tmp/x.pkl"))))
    add("gadget", "load_from_bytes.pt", p4(sg("torch.storage", "_load_from_bytes") + b"C" + bytes([len(EVIL)]) + EVIL + b"\x85R"))
    add("gadget", "open_write.pkl", p0(call(g("builtins", "open"), s0("/tmp/pwned"), s0("w"))))
    add("gadget", "shutil_rmtree.pkl", p0(call(g("shutil", "rmtree"), s0("/tmp/x"))))
    add("gadget", "numpy_save.pkl", p0(call(g("numpy", "save"), s0("/tmp/x.npy"), b"I1\n")))
    add("gadget", "tar_extract.pkl", p0(call(g("shutil", "unpack_archive"), s0("/tmp/x.tar"), s0("/"))))
    add("gadget", "webbrowser.pkl", p0(call(g("webbrowser", "open"), s0("http://127.0.0.1/"))))
    add("gadget", "socket.pkl", p0(call(g("socket", "create_connection"), b"(" + s0("127.0.0.1") + b"I9\nt")))
    add("gadget", "ctypes.pkl", p0(call(g("ctypes", "CDLL"), s0("libc.so.6"))))
    add("gadget", "runpy.pkl", p0(call(g("runpy", "run_path"), s0("/tmp/x.py"))))
    add("gadget", "pty_spawn.pkl", p0(call(g("pty", "spawn"), s0("sh"))))
    add("gadget", "asyncio_shell.pkl", p0(call(g("asyncio", "create_subprocess_shell"), s0("id"))))
    add("gadget", "copyreg_extension.pkl", p0(call(g("copyreg", "add_extension"), s0("os"), s0("system"), b"I1\n")) + b"\x80\x02\x82\x01X\x02\x00\x00\x00id\x85R.")
    add("gadget", "ext_opcode.pkl", b"\x80\x02\x82\x05X\x02\x00\x00\x00id\x85R.")
    add("gadget", "runstring.pkl", p0(call(g("numpy.testing._private.utils", "runstring"), s0("import os"), b"(dt")))
    add("gadget", "marshal_function.pkl", p0(call(g("types", "FunctionType"), call(g("marshal", "loads"), b"S'x'\n"), b"(dt")))
    add("gadget", "unknown_class.pkl", p4(sg("__main__", "Evil") + b")\x81."))
    add("gadget", "unknown_module.pt", torch_zip(p4(sg("mymodel.loader", "Loader") + b")\x81.")))
    add("gadget", "build_on_global.pkl", p0(g("os", "environ") + b"(dS'LD_PRELOAD'\nS'/tmp/x.so'\nsb"))
    add("gadget", "call_of_call.pkl", p4(sg("collections", "OrderedDict") + b")R)R."))
    add("gadget", "computed_stack_global.pkl", p4(sg("builtins", "str") + s4("os") + b"\x85R" + s4("system") + b"\x93" + s4("id") + b"\x85R"))
    add("gadget", "enum_getattr_then_called.pkl", p4(sg("builtins", "getattr") + sg("collections", "OrderedDict") + s4("fromkeys") + b"\x86R" + b"]" + b"\x85R"))
    # what only an exact unpickler sees
    add("unpickler-edge", "int_hex_then_global.pkl", b"I0x1\n0" + SYSTEM + b".")
    add("unpickler-edge", "int_octal_then_global.pkl", b"I010\n0" + SYSTEM + b".")
    add("unpickler-edge", "second_pickle_p0.pkl", dumps({"w": [1.0]}, 4) + EVIL)
    add("unpickler-edge", "legacy_torch_five.pt", b"".join(dumps(x, 2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})) + EVIL4 + dumps(["0"], 2) + os.urandom(64))
    add("unpickler-edge", "binary_after_stop.pkl", dumps([1, 2], 2) + EVIL4)
    add("unpickler-edge", "truncated_after_reduce.pkl", (b"(" + SYSTEM + b"I1\nI2\n"))
    add("unpickler-edge", "garbled_after_reduce.pkl", SYSTEM + b"\xff\xfe garbage")
    add("unpickler-edge", "memo_strings.pkl", b"\x80\x04" + s4("os") + b"\x94" + s4("path") + b"\x94\x93\x94" + b"h\x00" + s4("system") + b"\x93" + s4("id") + b"\x85R.")
    add("unpickler-edge", "memo_overwrite.pkl", b"\x80\x04" + s4("collections") + b"q\x00" + s4("os") + b"q\x00h\x00" + s4("system") + b"\x93" + s4("id") + b"\x85R.")
    add("unpickler-edge", "memoize_after_sparse_put.pkl", b"\x80\x04" + s4("safe") + b"q\x05" + s4("os") + b"\x94" + s4("system") + b"\x94h\x01h\x02\x93" + s4("id") + b"\x85R.")
    add("unpickler-edge", "global_at_eof.pkl", b"N0cantigravity\nx")
    add("unpickler-edge", "frame_straddle.pkl", b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00" + sg("os", "system") + s4("id") + b"\x85R.")
    add("unpickler-edge", "proto_switch.pkl", b"\x80\x04N0\x80\x02" + call(g("__builtin__", "exec"), s0("1")) + b".")
    # archives
    add("archive", "torch_evil_data_pkl.pt", torch_zip(dumps({"w": 1, "x": Reduce(os.system, "id")}, 2)))
    add("archive", "torch_duplicate_data_pkl.pt", zip_bytes([("archive/data.pkl", dumps({"w": 1})), ("archive/data.pkl", EVIL)]))
    add("archive", "zip_name_mismatch.pt", _rename_in_local_header(torch_zip(dumps({"w": 1})), b"archive/version", b"archive/vers.pk"))
    add("archive", "zip_overlap.pt", _overlapping_zip())
    add("archive", "zip_hidden_entry.pt", _hidden_member_zip())
    add("archive", "zip_bad_crc.pt", _bad_crc_zip())
    add("archive", "zip_encrypted.pt", _set_flag(torch_zip(EVIL), 0x01))
    add("archive", "zip_zstd_method.pt", _set_method(torch_zip(EVIL), 93))
    add("archive", "zip_nested_deep.zip", _nested_zip(5))
    add("archive", "zip_member_pickle.zip", zip_bytes([("readme.txt", b"hi"), ("nested/extra.bin", EVIL)], zipfile.ZIP_DEFLATED))
    add("archive", "pickle_then_zip.pt", EVIL + torch_zip(dumps({"w": 1})))
    add("archive", "torchscript.pt", torch_zip(dumps({"w": 1}), [("archive/code/__torch__.py", b"def forward(self):\n  return 1\n"), ("archive/constants.pkl", dumps(()))]))
    add("archive", "npz_object_array.npz", zip_bytes([("a.npy", npy("|O", EVIL))]))
    add("archive", "tar_member.tar", tar_bytes([("model.pkl", EVIL)]))
    add("archive", "legacy_torch_tar_v7.pt", v7_tar(tar_bytes([("sys_info", dumps({}, 2)), ("pickle", EVIL), ("storages", dumps(0, 2))])))
    add("archive", "tar_duplicate.tar", tar_bytes([("pickle", dumps(1)), ("pickle", EVIL)]))
    # compressed wrappers
    add("compressed", "gzip.joblib", gzip.compress(EVIL, mtime=0))
    add("compressed", "gzip_two_members.joblib", gzip.compress(b"(", mtime=0) + gzip.compress(SYSTEM + b"t.", mtime=0))
    add("compressed", "bz2.joblib", bz2.compress(EVIL4))
    add("compressed", "xz.joblib", lzma.compress(EVIL4))
    add("compressed", "lzma_alone.joblib", lzma.compress(EVIL4, format=lzma.FORMAT_ALONE))
    add("compressed", "zlib.joblib", zlib.compress(EVIL4))
    add("compressed", "lz4.joblib", b"\x04\x22\x4d\x18" + b"\x64\x40\xa7" + os.urandom(32))
    add("compressed", "zstd.pkl", b"\x28\xb5\x2f\xfd" + os.urandom(32))
    add("compressed", "gzip_broken.pkl", gzip.compress(EVIL + b"N" * 100, mtime=0)[:-6])
    add("compressed", "gzip_in_zip.zip", zip_bytes([("model.pkl.gz", gzip.compress(EVIL, mtime=0))]))
    # numpy object arrays, every spelling
    for i, descr in enumerate(["|O", "O", "<O", "O8", "object", [("a", "<f8"), ("b", "|O")], ("|O", (2,)), "weird"]):
        add("numpy", f"object_{i}.npy", npy(descr, EVIL))
    add("numpy", "npy_named_raw_pickle.npy", EVIL)
    # joblib
    add("joblib", "joblib_desync.joblib", _joblib_frame_desync())
    # polyglots
    add("polyglot", "safetensors_pickle.bin", _safetensors_polyglot())
    add("polyglot", "safetensors_pickle.safetensors", _safetensors_polyglot())
    add("polyglot", "gguf_pickle.gguf", _gguf_polyglot())
    add("polyglot", "pickle_named.json", EVIL)
    return out


def _safetensors_polyglot() -> bytes:
    """A valid safetensors file that pickle.load reads too: the header length's low byte is
    SHORT_BINBYTES ('C'), whose count (the next byte) jumps into a metadata string; there a
    chain of 'C' + count jumps (JSON-safe bytes) crosses the rest of the header, and the
    tensor data is a pickle that runs os.system."""
    import json

    for n1 in range(28, 256):
        n = n1 << 8 | ord("C")  # the header length: its bytes 0 and 1 are 'C' and the jump
        tail = '"},"w":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (len(EVIL), len(EVIL))
        head = '{"__metadata__":{"p":"'
        s_len = n - len(head) - len(tail)
        start, data_at = 2 + n1, 8 + n  # where the first jump lands; where the data starts
        filler = start - (8 + len(head))
        if filler < 0 or s_len < filler + 2:
            continue
        links, pos, chain_end = [], start, 8 + len(head) + s_len
        while pos < data_at:
            remaining = data_at - pos - 2
            j = min(remaining, 126)
            if remaining - j and remaining - j < 34:
                j = remaining - 34
            if j in (34, 92):
                j -= 1
            if pos + 2 > chain_end or not 32 <= j <= 126:
                break
            links.append((pos, j))
            pos += 2 + j
        if pos != data_at:
            continue
        text = bytearray(b"a" * s_len)
        for at, j in links:
            offset = at - (8 + len(head))
            if offset + 2 <= s_len:
                text[offset : offset + 2] = b"C" + bytes([j])
        raw = head.encode() + bytes(text) + tail.encode()
        if len(raw) != n:
            continue
        json.loads(raw)
        return struct.pack("<Q", n) + raw + EVIL
    raise AssertionError("no polyglot layout found")


def _gguf_polyglot() -> bytes:
    """A GGUF header start (magic, version 3) that pickle.load reads on: 'G' (BINFLOAT) eats
    'GUF', the version and one byte; '0' pops the float; the pickle follows."""
    return b"GGUF" + struct.pack("<I", 3) + b"\x00" + b"0" + EVIL


def benign() -> list[tuple[str, bytes]]:
    """The benign files (name, bytes), made by the real libraries."""
    return [(p.name, p.read_bytes()) for p in sorted(BENIGN_DIR.iterdir()) if p.is_file()]
