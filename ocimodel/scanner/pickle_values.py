"""What a pickle walk deals in: the symbolic values it follows and the record of what it found.

The walk never builds real objects: a global is a :class:`Global` (the name the unpickler would
import), the result of a call a :class:`Call` (what was called with what), strings and numbers
are kept when short enough to matter (a module or attribute name), and everything else is a
marker (:data:`TEXT`, :data:`BLOB`, :data:`OPAQUE`, :data:`NUMBER`). :class:`Walk` records the
globals (:class:`Ref`), the hazards and where the walk stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .rules import loaded_name

KEEP = 256  # longest str/bytes whose content is kept (module and attribute names are short)


class Region(Protocol):
    """Random access to ``size`` bytes (a file, a part of one, a spooled decompressed stream)."""

    size: int

    def pread(self, offset: int, n: int) -> bytes: ...


class PickleError(Exception):
    """The real unpicklers would raise here too: the load stops (message fit for a person)."""


class Undecidable(Exception):
    """The walk cannot tell what a loader would do next: the rest is not inspected."""


class _Marker:
    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}>"


TEXT = _Marker("str not kept")  # a str whose content is not kept: cannot name an importable global
BLOB = _Marker("bytes not kept")
OPAQUE = _Marker("object not followed")
NUMBER = _Marker("number not parsed")


class Global:
    """What GLOBAL/STACK_GLOBAL/INST pushed: ``module.name`` as the pickle spells it."""

    __slots__ = ("module", "name", "loaded", "ref", "enum_uses")

    def __init__(self, module: str, name: str, proto: int, ref: "Ref") -> None:
        self.module, self.name, self.ref = module, name, ref
        self.loaded = ".".join(loaded_name(module, name, proto))
        self.enum_uses = 0  # for getattr: calls that looked like an Enum member access


class Call:
    """The object a call would return: ``func(*args)`` (REDUCE, INST, OBJ) or
    ``cls.__new__(cls, *args)`` (NEWOBJ)."""

    __slots__ = ("func", "args", "new", "attrs", "state", "enum")

    def __init__(self, func: Any, args: Any, new: bool = False) -> None:
        self.func, self.args, self.new = func, args, new
        self.attrs: dict[Any, Any] | None = None
        self.state: Any = None
        self.enum = False  # the result of getattr(C, "NAME") on an allowed class


@dataclass
class Ref:
    """One global a pickle imports. ``danger``: dangerous whatever the allow-list says
    (why); ``exempt``: allowed whatever it says (why)."""

    module: str
    name: str
    proto: int
    danger: str | None = None
    exempt: str | None = None


@dataclass
class Walk:
    """What a walk found. ``error``: why it stopped early (``limit``: a scan limit or an
    undecidable step, so the content is not fully inspected; else the real unpicklers would
    have stopped there too). ``wrappers``: joblib arrays met (``joblib=True``: stepped over)."""

    refs: list[Ref] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)
    pickles: int = 0
    error: str | None = None
    limit: bool = False
    error_in: int = 0  # index of the pickle the error stopped
    error_at: int = 0  # bytes read into that pickle when it stopped (1: its first opcode failed)
    wrappers: int = 0
    wrapper_global: bool = False  # joblib's array wrapper is imported somewhere
    end: int = 0  # position after the last complete pickle
    kept: int = 0  # characters of names kept so far

    @property
    def imports(self) -> bool:
        """True when the walk met anything that imports or calls (it is a pickle that does something)."""
        return bool(self.refs or self.hazards)



RECONSTRUCTORS = {"copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"}
# allowed callables that may hand back one of their arguments (so the result's class is unknown)
PASS_THROUGH = {
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "torch._tensor._rebuild_from_type_v2",
    "builtins.getattr",
}
WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
GETATTR = "builtins.getattr"


class _Unknown:
    pass


UNKNOWN_CLASS = _Unknown()



def instance_class(call: Call) -> Any:
    """The class of what ``call`` returns, as a Global (or ``UNKNOWN_CLASS``)."""
    func = call.func
    if not isinstance(func, Global):
        return UNKNOWN_CLASS
    if call.new:
        return func
    if func.loaded in RECONSTRUCTORS:
        args = call.args
        first = args[0] if isinstance(args, tuple) and args else None
        return first if isinstance(first, Global) else UNKNOWN_CLASS
    if func.loaded in PASS_THROUGH:
        return UNKNOWN_CLASS
    return func
