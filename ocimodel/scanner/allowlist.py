"""The reviewed lists the scanner judges pickle globals by: data only, one reason per group.

``ALLOWED`` holds every global a pickle may import without making the file dangerous: each
one, called with anything a pickle can build from allowed globals and plain values, only
builds data. Everything else is dangerous by default. ``KNOWN_DANGEROUS`` only explains *why*
a global is dangerous (and forbids allowing it with ``--allow-global``): it is not what
makes it dangerous.

Names are spelled as the unpickler resolves them (after Python 2 names are mapped):
``module.qualname``. docs/scanning.md publishes these lists.
"""

from __future__ import annotations

_NUMPY_SCALARS = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "intc", "uintc",
    "int_", "uint", "longlong", "ulonglong", "float16", "float32", "float64", "longdouble", "complex64",
    "complex128", "clongdouble", "str_", "bytes_", "void", "datetime64", "timedelta64", "object_",
)
_TORCH_DTYPES = (
    "float16", "float32", "float64", "bfloat16", "half", "float", "double", "complex32", "complex64",
    "complex128", "cfloat", "cdouble", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32",
    "int64", "short", "int", "long", "bool", "qint8", "quint8", "qint32", "quint4x2", "float8_e4m3fn",
    "float8_e5m2",
)
_TORCH_STORAGES = (
    "UntypedStorage", "TypedStorage", "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage",
    "LongStorage", "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
    "ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage", "QInt32Storage",
    "QUInt4x2Storage", "QUInt2x4Storage",
)
_TORCH_REBUILDERS = (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_sparse_tensor", "_rebuild_nested_tensor",
    "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage", "_rebuild_qtensor",
    "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_cpu_tensor",
)

#: reason -> globals. A global here is safe to import and to call with pickle-built arguments.
ALLOWED: dict[str, tuple[str, ...]] = {
    "plain value types: calling them builds a value": tuple(
        f"builtins.{n}" for n in (
            "set", "frozenset", "slice", "complex", "bytearray", "bytes", "range", "str", "int", "float",
            "bool", "tuple", "list", "dict", "object", "Ellipsis", "NotImplemented",
        )
    ),
    "how pickle itself rebuilds objects (cls.__new__ and __init__ of allowed classes only)": (
        "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
    ),
    "bytes in protocol 0-2 pickles (str.encode with a codec)": ("_codecs.encode",),
    "standard containers and values": (
        "collections.OrderedDict", "collections.defaultdict", "collections.Counter", "collections.deque",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
        "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "uuid.SafeUUID",
    ),
    "numpy arrays, dtypes and scalars (numpy 1 and numpy 2 module names)": (
        *(f"{m}.{n}" for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")),
        "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
        "numpy.ma.core._mareconstruct", "numpy.ma.core.MaskedArray",
        "numpy.ndarray", "numpy.dtype", *(f"numpy.{n}" for n in _NUMPY_SCALARS),
    ),
    "numpy random generator state": (
        "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor", "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator", "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
        "numpy.random.bit_generator.SeedSequence", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    ),
    "joblib's wrapper for arrays stored inline (the scanner steps over their bytes)": (
        "joblib.numpy_pickle.NumpyArrayWrapper",
    ),
    "torch tensors, parameters and storages (how torch.save writes them)": (
        *(f"torch._utils.{n}" for n in _TORCH_REBUILDERS),
        "torch._tensor._rebuild_from_type_v2", "torch.nn.parameter.Parameter", "torch.Size", "torch.Tensor",
        "torch.serialization._get_layout", "torch.device", "torch.dtype", "torch.layout", "torch.memory_format",
        "torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch.contiguous_format", "torch.channels_last",
        "torch.channels_last_3d", "torch.preserve_format",
        *(f"torch.{n}" for n in _TORCH_DTYPES), *(f"torch.{n}" for n in _TORCH_STORAGES),
        *(f"torch.storage.{n}" for n in ("UntypedStorage", "TypedStorage")),
    ),
}

#: Packages whose own classes are allowed by rule, not by name (see docs/scanning.md): a
#: ``CamelCase`` class name (no dots), or Cython's ``__pyx_unpickle_CamelCase`` restorer of
#: one, in a module under the prefix, outside the excluded subpackages, minus names those
#: modules import from elsewhere.
CLASS_PACKAGES: dict[str, str] = {
    "sklearn.": "scikit-learn estimators and their helpers: restoring one runs only scikit-learn's own __setstate__",
    "torch.nn.modules.": "torch.nn layers (whole-model pickles): restoring one runs only torch.nn.Module.__setstate__",
}
#: Subpackages of CLASS_PACKAGES that hold test, download, transport or build helpers: no rule there.
CLASS_PACKAGE_EXCLUDED = (
    "sklearn.datasets", "sklearn.externals", "sklearn.tests", "sklearn.utils._testing", "sklearn.utils.tests",
    "sklearn.utils.parallel", "sklearn.utils._joblib", "sklearn.utils._show_versions", "sklearn._build_utils",
    "sklearn.__check_build", "sklearn.conftest", "sklearn.experimental", "sklearn.utils.fixes", "sklearn.callback",
    "sklearn.utils._test_common", "sklearn.utils.estimator_checks", "sklearn.utils.discovery",
)
#: Class names that modules under CLASS_PACKAGES import from other packages and that could do
#: more than hold data (found by ``benchmarks/make_scan_corpus.py --foreign`` on
#: scikit-learn 1.9.1 and torch 2.13, plus classes of the standard library that start
#: processes, open files or connections, or build classes): never allowed by the rule.
CLASS_PACKAGE_FOREIGN = frozenset({
    "Parallel", "Memory", "Path", "PurePath", "Popen", "Process", "Pool", "Thread", "TemporaryDirectory",
    "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile", "ZipFile", "TarFile", "FileIO",
    "BufferedWriter", "Request", "FileHandler", "Logger", "ThreadPoolExecutor", "ProcessPoolExecutor",
    "ModuleType", "FunctionType", "CodeType", "MethodType", "Template", "Formatter", "Queue",
    "Client", "Listener", "Connection", "ABCMeta", "ABC", "NamedTuple", "TypeVar", "Protocol", "Callable",
    "LinearOperator", "BackwardHook", "RemovableHandle", "Function", "Enum",
})

#: reason -> modules (and their submodules) known to run code or reach the system.
DANGEROUS_MODULES: dict[str, tuple[str, ...]] = {
    "runs commands or reaches the operating system": ("os", "posix", "nt", "_posixsubprocess", "_winapi", "pty", "posixpath", "ntpath", "platform"),
    "starts processes or threads": ("subprocess", "multiprocessing", "concurrent", "asyncio", "_thread", "threading", "signal", "sched"),
    "imports or runs arbitrary code": ("sys", "importlib", "runpy", "pkgutil", "zipimport", "imp", "pydoc", "inspect", "site", "builtins.__import__"),
    "builds or runs code objects": ("code", "codeop", "types", "marshal", "timeit", "pdb", "bdb", "trace", "profile", "cProfile", "dis", "ast"),
    "nested loader: unpickles other data": ("pickle", "_pickle", "pickletools", "dill", "cloudpickle", "shelve", "jsonpickle"),
    "extension registry: makes any global loadable by number": ("copyreg", "copy_reg"),
    "writes, reads or removes files": ("shutil", "tempfile", "io", "_io", "fileinput", "glob", "filecmp", "mmap", "dbm", "sqlite3", "zipfile", "tarfile", "gzip", "bz2", "lzma"),
    "reaches the network": (
        "socket", "ssl", "http", "urllib", "urllib3", "requests", "httpx", "aiohttp", "ftplib", "smtplib",
        "telnetlib", "xmlrpc", "webbrowser", "socketserver", "imaplib", "poplib",
    ),
    "native code and raw memory": ("ctypes", "_ctypes", "cffi"),
    "installs packages": ("pip", "setuptools", "distutils", "ensurepip", "venv"),
    "applies received configuration (logging.config.listen runs code)": ("logging",),
    "calls or reaches arbitrary attributes": ("operator", "_operator", "functools", "_functools", "itertools", "contextlib", "weakref"),
    "runs TorchScript, loads other files or fetches code": ("torch.hub", "torch.jit", "torch.package", "torch.ops", "torch.utils.cpp_extension", "torch.utils.data", "torch.serialization", "torch.storage"),
    "numpy helpers that load, save or run code": ("numpy.f2py", "numpy.distutils", "numpy.testing", "numpy.lib.format", "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.ctypeslib"),
    "joblib loaders (nested unpickling of other files)": ("joblib",),
}

#: reason -> exact globals, dangerous wherever their module would otherwise be judged.
DANGEROUS_NAMES: dict[str, tuple[str, ...]] = {
    "builtin that runs code, imports, or reaches attributes or files": tuple(
        f"builtins.{n}" for n in (
            "eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__", "open", "globals",
            "locals", "vars", "breakpoint", "input", "help", "exit", "quit", "type", "super", "__build_class__",
        )
    ),
    "nested loader: unpickles or loads other data": (
        "numpy.load", "numpy.fromfile", "numpy.memmap", "numpy.loadtxt", "numpy.genfromtxt",
        "pandas.read_pickle", "pandas.io.pickle.read_pickle", "pandas.read_csv", "torch.load", "torch.from_file",
        "torch.storage._load_from_bytes", "joblib.load", "joblib.numpy_pickle.load",
        "joblib.numpy_pickle_compat.NDArrayWrapper", "joblib.numpy_pickle_compat.ZNDArrayWrapper",
        "keras.models.load_model", "tensorflow.keras.models.load_model", "yaml.load", "yaml.unsafe_load",
    ),
    "writes files": ("numpy.save", "numpy.savez", "numpy.savetxt", "numpy.ndarray.tofile", "torch.save", "joblib.dump", "pandas.DataFrame.to_pickle"),
    "runs code given as text": ("numpy.testing._private.utils.runstring", "pandas.eval", "pandas.DataFrame.eval", "pandas.DataFrame.query", "numexpr.evaluate"),
    "reaches arbitrary attributes or calls": ("operator.attrgetter", "operator.methodcaller", "operator.itemgetter", "functools.partial", "functools.reduce"),
}
