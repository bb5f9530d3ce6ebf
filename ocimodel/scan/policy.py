"""Which pickle globals are dangerous, which are known-harmless, and why.

The rule, in order: an exact allow-list entry is safe; a module (or any submodule of it) that
can run code, reach the network or the file system is dangerous; a few named callables are
dangerous wherever they live; a dotted name that walks through a dunder attribute
(``OrderedDict.__init__.__globals__``) is dangerous; everything else is unknown.

Why ``functools.partial`` is not flagged on its own: a pickle can only reach a callable by
importing it as a global, which is classified here separately; wrapping adds no power.
"""

from __future__ import annotations

import _compat_pickle
import re

# why importing anything from these modules (or their submodules) is dangerous.
_DANGEROUS_MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "operating system access: can run commands": ("os", "posix", "nt", "_posixsubprocess", "_winapi", "pty"),
    "can start processes or threads": ("subprocess", "multiprocessing", "asyncio", "_thread", "signal"),
    "can import or run arbitrary code": ("sys", "importlib", "runpy", "pkgutil", "zipimport", "imp"),
    "can build or run code objects": (
        "code", "codeop", "types", "marshal", "timeit", "pdb", "bdb", "trace", "profile", "cProfile",
    ),
    "nested unpickling of other data": ("pickle", "_pickle", "dill", "cloudpickle", "shelve"),
    "file system access": ("shutil", "tempfile", "io", "_io", "fileinput", "glob"),
    "network access": (
        "socket", "ssl", "http", "urllib", "urllib3", "requests", "httpx", "aiohttp", "ftplib", "smtplib",
        "telnetlib", "xmlrpc", "webbrowser",
    ),
    "native code and raw memory access": ("ctypes", "_ctypes", "cffi"),
    "package installation": ("pip", "setuptools", "distutils", "ensurepip", "venv"),
    "logging.config.listen runs received configuration code": ("logging.config",),
}
_DANGEROUS_MODULES = {m: why for why, group in _DANGEROUS_MODULE_GROUPS.items() for m in group}

# __builtin__ is Python 2's name for builtins; pickle maps it on load.
_BUILTINS = ("builtins", "__builtin__", "exceptions")

_DANGEROUS_BUILTINS = {
    "eval", "exec", "execfile", "compile", "getattr", "setattr", "delattr", "__import__", "open",
    "globals", "locals", "vars", "breakpoint", "apply", "input", "raw_input", "reload", "file",
    "help", "exit", "quit", "type",
}

# Exact (module, name) pairs that are dangerous although their module is not.
_DANGEROUS_NAMES: dict[tuple[str, str], str] = {
    ("operator", "attrgetter"): "reaches arbitrary attributes",
    ("operator", "methodcaller"): "calls arbitrary methods",
    ("_operator", "attrgetter"): "reaches arbitrary attributes",
    ("_operator", "methodcaller"): "calls arbitrary methods",
    ("codecs", "open"): "file system access",
    ("torch", "load"): "nested unpickling of other data",
    ("torch.serialization", "load"): "nested unpickling of other data",
    ("torch.hub", "load"): "downloads and runs code",
    ("torch.jit", "load"): "loads TorchScript code",
    ("numpy", "load"): "can unpickle other data",
    ("numpy.testing._private.utils", "runstring"): "runs a string as code",
    ("pandas", "read_pickle"): "nested unpickling of other data",
    ("joblib", "load"): "nested unpickling of other data",
}
_DANGEROUS_NAME_PREFIXES = ("torch.hub", "torch.package", "numpy.f2py", "numpy.distutils")

_TORCH_DTYPES = {
    "float16", "float32", "float64", "bfloat16", "half", "float", "double", "complex32", "complex64",
    "complex128", "cfloat", "cdouble", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
    "int32", "int64", "short", "int", "long", "bool", "qint8", "quint8", "qint32", "quint4x2",
    "float8_e4m3fn", "float8_e5m2",
}
_TORCH_OTHERS = {
    "device", "Size", "dtype", "layout", "memory_format", "strided", "sparse_coo", "sparse_csr",
    "contiguous_format", "channels_last", "channels_last_3d", "preserve_format", "Tensor",
}
_TORCH_REBUILDERS = {
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_sparse_tensor", "_rebuild_sparse_csr_tensor",
    "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage", "_rebuild_qtensor",
    "_rebuild_nested_tensor", "_rebuild_wrapper_subclass", "_rebuild_xla_tensor",
}

_ALLOWED: set[tuple[str, str]] = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "Counter"),
    ("collections", "deque"), ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"),
    ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__"), ("_codecs", "encode"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID"),
    ("torch.serialization", "_get_layout"), ("torch.nn.parameter", "Parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch.storage", "UntypedStorage"),
    ("torch.storage", "TypedStorage"), ("torch.storage", "_load_from_bytes"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.ma.core", "_mareconstruct"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"), ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
    *((b, n) for b in _BUILTINS for n in (
        "set", "frozenset", "slice", "complex", "bytearray", "bytes", "range", "str", "int",
        "float", "bool", "tuple", "list", "dict", "object", "NoneType", "Ellipsis",
    )),
    *(("torch", n) for n in _TORCH_DTYPES | _TORCH_OTHERS),
    *(("torch._utils", n) for n in _TORCH_REBUILDERS),
}

_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9]*\Z")
_DUNDER = re.compile(r"__\w+__\Z")
# Packages whose public classes only build data when instantiated or restored.
_CLASS_PACKAGES = ("sklearn.", "torch.nn.modules.", "numpy.dtypes")


def _under(module: str, parent: str) -> bool:
    return module == parent or module.startswith(parent + ".")


def classify(module: str, name: str) -> tuple[bool, bool, str]:
    """``(dangerous, allowed, reason)`` for the global ``module.name`` as a pickle names it.

    Python 2 names are judged as what the unpickler loads them as (``commands.Popen`` is
    ``subprocess.Popen``); the stricter verdict of the two wins.
    """
    loaded = _compat_pickle.NAME_MAPPING.get((module, name))
    if loaded is None:
        loaded = (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
    verdict = _classify(*loaded)
    if loaded == (module, name):
        return verdict
    own = _classify(module, name)
    if own[0] and not verdict[0]:
        return own
    return verdict[0], verdict[1], f"{verdict[2]} (loaded as {loaded[0]}.{loaded[1]})"


def _classify(module: str, name: str) -> tuple[bool, bool, str]:
    if (module, name) in _ALLOWED:
        return False, True, "allow-listed"
    if module.startswith("torch") and name.endswith("Storage") and name.isidentifier():
        return False, True, "allow-listed (torch storage type)"
    top = name.split(".", 1)[0]
    if module in _BUILTINS and top in _DANGEROUS_BUILTINS:
        return True, False, f"builtin {top}: can run code or reach the system"
    reason = _DANGEROUS_NAMES.get((module, name))
    if reason:
        return True, False, reason
    for parent, why in _DANGEROUS_MODULES.items():
        if _under(module, parent):
            return True, False, f"{parent}: {why}"
    if any(_under(module, p) for p in _DANGEROUS_NAME_PREFIXES):
        return True, False, f"{module}: can run code"
    if any(_DUNDER.match(part) for part in name.split(".")) or "<" in name:
        return True, False, "walks attributes through a dunder: can reach arbitrary objects"
    if "." not in name and _CLASS_NAME.match(name) and any(
        module.startswith(p) or module == p.rstrip(".") for p in _CLASS_PACKAGES
    ):
        return False, True, "allow-listed (data class of a known library)"
    return False, False, "not on the allow-list"
