"""Walk pickle opcodes the way CPython's unpicklers read them, executing nothing.

The walk accepts what either of CPython's unpicklers accepts (the C one ``pickle.load`` and
``torch.load`` use, the Python one joblib uses): every protocol 0-5 opcode, text integers in
any base ``int(x, 0)`` or C's ``strtol`` reads (``I0x1``), frames, memo tricks, several pickles
in a row. Values are followed symbolically (strings that could name a module, numbers,
tuples, lists, dicts, the memo, what each call was given) just far enough to resolve every
global exactly and to step over the array bytes joblib writes between its opcodes. Where the
real unpicklers would raise, the walk stops too: what came before the error still ran and is
reported.

Two modes: ``joblib=False`` is ``pickle.load`` (frames are transparent, nothing is read
between opcodes); ``joblib=True`` is joblib's ``NumpyUnpickler``: the Python unpickler's frame
rules, and after each ``NumpyArrayWrapper`` is built, its array bytes (or, for object arrays,
a nested pickle) are read from the file at the position the Python unpickler leaves its file.
"""

from __future__ import annotations

import codecs
import functools
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .limits import Budget, ScanLimitError
from .policy import AllowList, loaded_name

_CHUNK = 1 << 16
KEEP = 256  # longest str/bytes whose content is kept (module and attribute names are short)
_LINE_KEEP = 1 << 16  # longest text line whose content is parsed
_CONTAINER_KEEP = 256  # items kept per list/dict/set (more are checked, not stored)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_PUBLIC = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_STRTOL = re.compile(rb"\s*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_MAX_NESTED_CHECK = 10_000  # values looked at when checking where a getattr result went
_KEPT_CHARS = 32 << 20  # characters of names kept per walk (beyond: not kept, so never resolved)


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


# -- reading ---------------------------------------------------------------------------------


class _Input:
    """Reads a region from ``pos``, minding pickle frames: ``jump_at`` is the end of the
    current frame. Python's unpickler (joblib mode) has read the frame whole, so its file
    handle is at ``jump_to``: reads continue there when the frame is used up. A read that
    straddles a frame's end is an error to Python's unpickler, and to C's it loses or keeps
    the rest of the frame depending on the file object: either way ``straddle`` is raised."""

    def __init__(self, region: Region, pos: int, straddle: type[Exception] = PickleError) -> None:
        self.region, self.size = region, region.size
        self.buf, self.base, self.i = b"", pos, 0
        self.jump_at, self.jump_to = -1, 0
        self.straddle = straddle

    def _crossed(self) -> Exception:
        if self.straddle is PickleError:
            return PickleError("pickle exhausted before end of frame")
        return self.straddle("a read crosses the end of a pickle frame: CPython's unpicklers disagree on what it reads")

    def tell(self) -> int:
        return self.base + self.i

    def seek(self, pos: int, keep_frame: bool = False) -> None:
        self.buf, self.base, self.i = b"", pos, 0
        if not keep_frame:
            self.jump_at = -1

    def _refill(self) -> bool:
        pos = self.base + self.i
        if pos == self.jump_at:
            pos, self.jump_at = self.jump_to, -1
        end = self.size if self.jump_at < 0 else self.jump_at
        n = min(_CHUNK, end - pos)
        self.buf = self.region.pread(pos, n) if n > 0 else b""
        self.base, self.i = pos, 0
        return bool(self.buf)

    def byte(self) -> int:
        if self.i >= len(self.buf) and not self._refill():
            return -1
        b = self.buf[self.i]
        self.i += 1
        return b

    def read(self, n: int) -> bytes:
        i, buf = self.i, self.buf
        if i + n <= len(buf):
            self.i = i + n
            return buf[i : i + n]
        parts, have = [buf[i:]], len(buf) - i
        self.i = len(buf)
        while have < n:
            crossing = have and self.tell() == self.jump_at
            if not self._refill():
                raise PickleError("pickle data was truncated")
            if crossing:
                raise self._crossed()
            take = min(n - have, len(self.buf))
            parts.append(self.buf[:take])
            self.i, have = take, have + take
        return b"".join(parts)

    def skip(self, n: int) -> None:
        """Step over ``n`` bytes without reading them (a bulk payload)."""
        if self.i + n <= len(self.buf):
            self.i += n
            return
        target = self.tell() + n
        limit = self.size if self.jump_at < 0 else self.jump_at
        if target > limit:
            raise PickleError("pickle data was truncated") if self.jump_at < 0 else self._crossed()
        self.seek(target, keep_frame=True)

    def readline(self, cap: int) -> tuple[bytes, int]:
        """A line like the Python unpickler reads it: up to and including ``\\n`` (or to the
        end of the data). Returns (its first bytes, at most ``_LINE_KEEP``; its full length)."""
        kept: list[bytes] = []
        have = total = 0
        while True:
            if self.i >= len(self.buf):
                crossing = total and self.tell() == self.jump_at
                if not self._refill():
                    return b"".join(kept), total
                if crossing:
                    raise self._crossed()
            nl = self.buf.find(b"\n", self.i)
            end = len(self.buf) if nl < 0 else nl + 1
            piece = self.buf[self.i : end]
            self.i = end
            total += len(piece)
            if have < _LINE_KEEP:
                kept.append(piece[: _LINE_KEEP - have])
                have += len(kept[-1])
            if total > cap:
                raise ScanLimitError(f"a text line longer than {cap >> 20} MiB: stopped (scan limit 'line')")
            if nl >= 0:
                return b"".join(kept), total


# -- the machine -----------------------------------------------------------------------------

# length-prefixed payload opcodes: (bytes of the length, what the payload is)
_COUNTED = {
    "SHORT_BINSTRING": (1, "latin"), "BINBYTES": (4, "bytes"), "SHORT_BINBYTES": (1, "bytes"), "BINBYTES8": (8, "bytes"),
    "BINUNICODE": (4, "str"), "SHORT_BINUNICODE": (1, "str"), "BINUNICODE8": (8, "str"),
}
_RECONSTRUCTORS = {"copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"}
# allowed callables that may hand back one of their arguments (so the result's class is unknown)
_PASS_THROUGH = {
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "torch._tensor._rebuild_from_type_v2",
    "builtins.getattr",
}
_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_GETATTR = "builtins.getattr"


class _Unknown:
    pass


UNKNOWN_CLASS = _Unknown()


class _Machine:
    def __init__(self, region: Region, pos: int, walk: Walk, allow: AllowList, budget: Budget, joblib: bool) -> None:
        self.inp = _Input(region, pos, PickleError if joblib else Undecidable)
        self.region = region
        self.walk = walk
        self.allow = allow
        self.budget = budget
        self.joblib = joblib
        self.limits = budget.limits
        self.handlers: list[Callable[[], bool] | None] = [None] * 256
        for code, name in _OPCODES.items():
            if name in _COUNTED:
                self.handlers[code] = functools.partial(self.op_counted, *_COUNTED[name])
            else:
                self.handlers[code] = getattr(self, "op_" + name)
        self.reset()

    def close(self) -> None:
        """Drop the walk's values now: the handler table is a reference cycle that would
        otherwise keep them (up to the 'memo' limit of them) until the cyclic GC runs."""
        self.reset()
        self.handlers = []

    def reset(self) -> None:
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.meta_items = 0
        self.memo: list[Any] = []
        self.sparse: dict[int, Any] = {}
        self.proto = 0
        self.getattrs: list[Global] = []  # getattr globals of this pickle (Enum members, Python >= 3.12)
        self.wrapper_seen = False

    # -- driving ----------------------------------------------------------------------------

    def run_one(self) -> None:
        """Walk one pickle to its STOP (raises PickleError, ScanLimitError, Undecidable)."""
        self.reset()
        try:
            self._run()
        finally:
            self._finish_getattrs()

    def _run(self) -> None:
        inp, handlers, budget = self.inp, self.handlers, self.budget
        tick = 0
        while True:
            if inp.i < len(inp.buf):
                op = inp.buf[inp.i]
                inp.i += 1
            else:
                op = inp.byte()
                if op < 0:
                    raise PickleError("pickle data was truncated (no STOP)")
            handler = handlers[op]
            if handler is None:
                raise PickleError(f"invalid opcode {op:#04x} at byte {inp.tell() - 1}")
            budget.opcodes -= 1
            tick += 1
            if tick & 0x3FFF == 0 or budget.opcodes < 0:
                self._check_limits()
            if handler():
                return

    def _check_limits(self) -> None:
        if self.budget.opcodes < 0:
            raise ScanLimitError(f"more than {self.limits.opcodes} pickle opcodes: stopped (scan limit 'opcodes')")
        if len(self.stack) + self.meta_items > self.limits.memo or len(self.memo) + len(self.sparse) > self.limits.memo:
            raise ScanLimitError(f"a pickle holding more than {self.limits.memo} values: stopped (scan limit 'memo')")
        self.budget.check_time()

    # -- stack helpers -----------------------------------------------------------------------

    def pop(self) -> Any:
        try:
            return self.stack.pop()
        except IndexError:
            raise PickleError("unpickling stack underflow") from None

    def top(self) -> Any:
        try:
            return self.stack[-1]
        except IndexError:
            raise PickleError("unpickling stack underflow") from None

    def pop_mark(self) -> list[Any]:
        items = self.stack
        try:
            self.stack = self.metastack.pop()
        except IndexError:
            raise PickleError("could not find MARK") from None
        self.meta_items -= len(self.stack)
        return items

    def push(self, value: Any) -> bool:
        self.stack.append(value)
        return False

    # -- findings ----------------------------------------------------------------------------

    def global_(self, module: str, name: str) -> Global:
        ref = Ref(module, name, self.proto)
        self.walk.refs.append(ref)
        value = Global(module, name, self.proto, ref)
        if value.loaded == _GETATTR:
            self.getattrs.append(value)
        if value.loaded == _WRAPPER:
            self.wrapper_seen = self.walk.wrapper_global = True
        return value

    def hazard(self, why: str) -> None:
        if why not in self.walk.hazards:
            self.walk.hazards.append(why)

    def _finish_getattrs(self) -> None:
        """getattr(C, "NAME") on an allowed class, whose result is only kept as data, is how
        Python >= 3.12 pickles some Enum members: not dangerous. Any other use is."""
        for g in self.getattrs:
            if g.ref.danger is None and g.enum_uses:
                g.ref.exempt = "getattr(C, 'NAME') on an allowed class, result kept as data (an Enum member)"

    def _escape(self, value: Any, why: str) -> None:
        """``value`` went where getattr, or what it returned, must never go."""
        if isinstance(value, Global) and value.loaded == _GETATTR:
            value.ref.danger = f"getattr {why}: reaches arbitrary attributes"
        elif isinstance(value, Call) and value.enum and isinstance(value.func, Global):
            value.func.ref.danger = f"the result of getattr {why}: reaches arbitrary attributes"

    def _check_args(self, args: Any) -> None:
        """getattr (or what it returned) inside a call's arguments may be called or
        instantiated by that call: dangerous."""
        if not self.getattrs:
            return
        seen, todo = 0, [args]
        while todo:
            value = todo.pop()
            seen += 1
            if seen > _MAX_NESTED_CHECK:
                for g in self.getattrs:
                    self._escape(g, "used where ocimodel cannot follow it")
                return
            if isinstance(value, (Global, Call)):
                self._escape(value, "passed to a call")
                if isinstance(value, Call):
                    todo.append(value.args)
            elif isinstance(value, (tuple, list, set)):
                todo.extend(value)
            elif isinstance(value, dict):
                todo.extend(value.keys())
                todo.extend(value.values())

    def call(self, func: Any, args: Any, new: bool = False) -> Call:
        if isinstance(func, Global):
            if func.loaded == _GETATTR and not new and self._enum_access(func, args):
                result = Call(func, args)
                result.enum = True
                return result
            if func.loaded == _GETATTR:
                self._escape(func, "called on something other than an allowed class's public name")
        elif isinstance(func, Call):
            self._escape(func, "called")
            self.hazard("calls an object returned by another call (a gadget chain)")
        elif func is OPAQUE:
            self.hazard("calls an object ocimodel cannot follow (a persistent id or an extension)")
        else:
            raise PickleError(f"{type(func).__name__} object is not callable")
        self._check_args(args)
        return Call(func, args, new)

    def _enum_access(self, func: Global, args: Any) -> bool:
        if not (isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], Global)
                and isinstance(args[1], str) and _PUBLIC.match(args[1])):
            return False
        cls = args[0]
        if cls.loaded == _GETATTR or not self.allow.judge(cls.module, cls.name, cls.ref.proto).allowed:
            return False
        func.enum_uses += 1
        return True

    # -- values ------------------------------------------------------------------------------

    def text(self, data: bytes, encoding: str = "utf-8", errors: str = "strict") -> Any:
        if len(data) > KEEP:
            return TEXT
        value = data.decode(encoding, errors)
        if not _NAME.match(value) or self.walk.kept + len(value) > _KEPT_CHARS:
            return TEXT
        self.walk.kept += len(value)
        return value

    def counted(self, n: int, kind: str) -> Any:
        """A length-prefixed payload: kept if short, else stepped over."""
        if n <= KEEP:
            data = self.inp.read(n)
            if kind == "bytes":
                return data
            try:
                return self.text(data, "utf-8", "surrogatepass") if kind == "str" else self.text(data, "latin-1")
            except UnicodeDecodeError:
                raise PickleError("invalid UTF-8 in a BINUNICODE string") from None
        self.inp.skip(n)
        return TEXT if kind != "bytes" else BLOB

    def line(self) -> bytes:
        data, total = self.inp.readline(self.limits.line)
        if total == 0:
            raise PickleError("pickle data was truncated (empty line)")
        return data[:-1] if total == len(data) else data  # [:-1] as pickle does, newline or not

    def length(self, fmt: int, signed: bool = False) -> int:
        return int.from_bytes(self.inp.read(fmt), "little", signed=signed)

    # -- containers --------------------------------------------------------------------------

    def setitems(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise PickleError("odd number of items for SETITEMS")
        if isinstance(target, Global):
            self.hazard("SETITEM on an imported object: modifies a module-level object")
        for k, v in zip(items[::2], items[1::2]):
            if isinstance(target, dict):
                try:
                    if len(target) < _CONTAINER_KEEP or k in target:
                        target[k] = v
                    else:
                        hash(k)
                except TypeError:
                    raise PickleError("unhashable dict key") from None
            elif isinstance(target, (tuple, str, bytes, int, float, type(None), set)):
                raise PickleError(f"{type(target).__name__} object does not support item assignment")
            elif isinstance(target, Call):
                self._escape(target, "modified")
                self._check_args((k, v))

    # -- opcodes -----------------------------------------------------------------------------

    def op_MARK(self) -> bool:
        self.metastack.append(self.stack)
        self.meta_items += len(self.stack)
        self.stack = []
        return False

    def op_STOP(self) -> bool:
        self.pop()
        return True

    def op_POP(self) -> bool:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()
        return False

    def op_POP_MARK(self) -> bool:
        self.pop_mark()
        return False

    def op_DUP(self) -> bool:
        return self.push(self.top())

    def op_FLOAT(self) -> bool:
        data = self.line()
        for text in (data, data.split(b"\0", 1)[0]):
            try:
                return self.push(float(text))
            except ValueError:
                continue
        if len(data) >= _LINE_KEEP:
            return self.push(NUMBER)
        raise PickleError("could not convert string to float")

    def op_INT(self) -> bool:
        data = self.line()
        if data == b"00":
            return self.push(False)
        if data == b"01":
            return self.push(True)
        value = _parse_int(data)
        if value is None:
            if len(data) >= _LINE_KEEP:
                return self.push(NUMBER)
            raise PickleError("invalid literal for INT")
        return self.push(value)

    def op_BININT(self) -> bool:
        return self.push(self.length(4, signed=True))

    def op_BININT1(self) -> bool:
        return self.push(self.length(1))

    def op_BININT2(self) -> bool:
        return self.push(self.length(2))

    def op_LONG(self) -> bool:
        data = self.line()
        if data.endswith(b"L"):
            data = data[:-1]
        try:
            return self.push(int(data, 0))
        except ValueError:
            if len(data) >= _LINE_KEEP - 1:
                return self.push(NUMBER)
            raise PickleError("invalid literal for LONG") from None

    def op_LONG1(self) -> bool:
        n = self.length(1)
        return self.push(int.from_bytes(self.inp.read(n), "little", signed=True) if n <= KEEP else self._skip_number(n))

    def op_LONG4(self) -> bool:
        n = self.length(4, signed=True)
        if n < 0:
            raise PickleError("LONG pickle has negative byte count")
        return self.push(int.from_bytes(self.inp.read(n), "little", signed=True) if n <= KEEP else self._skip_number(n))

    def _skip_number(self, n: int) -> Any:
        self.inp.skip(n)
        return NUMBER

    def op_BINFLOAT(self) -> bool:
        return self.push(struct.unpack(">d", self.inp.read(8))[0])

    def op_STRING(self) -> bool:
        data = self.line()
        if len(data) >= _LINE_KEEP:
            return self.push(TEXT)
        if not (len(data) >= 2 and data[:1] == data[-1:] and data[:1] in (b"'", b'"')):
            raise PickleError("the STRING opcode argument must be quoted")
        try:
            raw = codecs.escape_decode(data[1:-1])[0]  # type: ignore[attr-defined]
        except ValueError:
            raise PickleError("invalid escape in STRING") from None
        return self.push(self.text(raw, "latin-1"))

    def op_BINSTRING(self) -> bool:
        n = self.length(4, signed=True)
        if n < 0:
            raise PickleError("BINSTRING pickle has negative byte count")
        return self.push(self.counted(n, "latin"))

    def op_counted(self, width: int, kind: str) -> bool:
        """BINBYTES, BINUNICODE and their short and 8-byte forms: a length, then the payload."""
        return self.push(self.counted(self.length(width), kind))

    def op_BYTEARRAY8(self) -> bool:
        self.counted(self.length(8), "bytes")
        return self.push(OPAQUE)  # a bytearray: unhashable, never a name

    def op_UNICODE(self) -> bool:
        data = self.line()
        if len(data) >= _LINE_KEEP:
            return self.push(TEXT)
        try:
            return self.push(self.text(data, "raw-unicode-escape"))
        except UnicodeDecodeError:
            raise PickleError("invalid raw-unicode-escape in UNICODE") from None

    def op_NONE(self) -> bool:
        return self.push(None)

    def op_NEWTRUE(self) -> bool:
        return self.push(True)

    def op_NEWFALSE(self) -> bool:
        return self.push(False)

    def op_EMPTY_TUPLE(self) -> bool:
        return self.push(())

    def op_TUPLE(self) -> bool:
        return self.push(tuple(self.pop_mark()))

    def op_TUPLE1(self) -> bool:
        return self.push((self.pop(),))

    def op_TUPLE2(self) -> bool:
        b = self.pop()
        return self.push((self.pop(), b))

    def op_TUPLE3(self) -> bool:
        c, b = self.pop(), self.pop()
        return self.push((self.pop(), b, c))

    def op_EMPTY_LIST(self) -> bool:
        return self.push([])

    def op_LIST(self) -> bool:
        return self.push(self.pop_mark()[:_CONTAINER_KEEP])

    def op_EMPTY_DICT(self) -> bool:
        return self.push({})

    def op_DICT(self) -> bool:
        items = self.pop_mark()
        d: dict[Any, Any] = {}
        self.setitems(d, items)
        return self.push(d)

    def op_EMPTY_SET(self) -> bool:
        return self.push(set())

    def op_FROZENSET(self) -> bool:
        items = self.pop_mark()
        try:
            for item in items:
                hash(item)
        except TypeError:
            raise PickleError("unhashable item in FROZENSET") from None
        return self.push(OPAQUE)

    def op_ADDITEMS(self) -> bool:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, Global):
            self.hazard("ADDITEMS on an imported object: modifies a module-level object")
        if isinstance(target, set):
            try:
                for item in items:
                    if len(target) < _CONTAINER_KEEP:
                        target.add(item)
                    else:
                        hash(item)
            except TypeError:
                raise PickleError("unhashable set item") from None
        elif isinstance(target, (list, tuple, dict, str, bytes, int, float, type(None))):
            raise PickleError(f"{type(target).__name__} object has no attribute 'add'")
        else:
            self._check_args(tuple(items))
        return False

    def op_APPEND(self) -> bool:
        value = self.pop()
        self._append(self.top(), [value])
        return False

    def op_APPENDS(self) -> bool:
        items = self.pop_mark()
        self._append(self.top(), items)
        return False

    def _append(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            room = _CONTAINER_KEEP - len(target)
            if room > 0:
                target.extend(items[:room])
        elif isinstance(target, Global):
            self.hazard("APPEND on an imported object: modifies a module-level object")
        elif isinstance(target, (tuple, dict, set, str, bytes, int, float, type(None))):
            raise PickleError(f"{type(target).__name__} object has no attribute 'append'")
        elif isinstance(target, Call):
            self._escape(target, "modified")
            self._check_args(tuple(items))

    def op_SETITEM(self) -> bool:
        value, key = self.pop(), self.pop()
        self.setitems(self.top(), [key, value])
        return False

    def op_SETITEMS(self) -> bool:
        items = self.pop_mark()
        self.setitems(self.top(), items)
        return False

    def text_index(self, op: str) -> int:
        """The memo index of GET and PUT: a decimal text line."""
        try:
            return int(self.line(), 10)
        except ValueError:
            raise PickleError(f"invalid {op} index") from None

    def op_GET(self) -> bool:
        return self.push(self.memo_get(self.text_index("GET")))

    def op_BINGET(self) -> bool:
        return self.push(self.memo_get(self.length(1)))

    def op_LONG_BINGET(self) -> bool:
        return self.push(self.memo_get(self.length(4)))

    def memo_get(self, index: int) -> Any:
        if 0 <= index < len(self.memo):
            return self.memo[index]
        try:
            return self.sparse[index]
        except KeyError:
            raise PickleError(f"memo value not found at index {index}") from None

    def memo_put(self, index: int) -> bool:
        if index < 0:
            raise PickleError("negative PUT argument")
        value = self.top()
        memo = self.memo
        if index == len(memo):
            memo.append(value)
            self.sparse.pop(index, None)
        elif index < len(memo):
            memo[index] = value
        else:
            self.sparse[index] = value
        return False

    def op_PUT(self) -> bool:
        return self.memo_put(self.text_index("PUT"))

    def op_BINPUT(self) -> bool:
        return self.memo_put(self.length(1))

    def op_LONG_BINPUT(self) -> bool:
        return self.memo_put(self.length(4))

    def op_MEMOIZE(self) -> bool:
        return self.memo_put(len(self.memo) + len(self.sparse))

    def op_GLOBAL(self) -> bool:
        module, name = self._two_lines("utf-8")
        return self.push(self.global_(module, name))

    def _two_lines(self, encoding: str) -> tuple[str, str]:
        module, name = self.line(), self.line() if self.inp.tell() < self.inp.size else b""
        try:
            return module.decode(encoding), name.decode(encoding)
        except UnicodeDecodeError:
            raise PickleError(f"global name is not valid {encoding}") from None

    def op_STACK_GLOBAL(self) -> bool:
        name, module = self.pop(), self.pop()
        if isinstance(module, str) and isinstance(name, str):
            return self.push(self.global_(module, name))
        if not all(isinstance(v, (str, Call, Global)) or v is TEXT or v is OPAQUE for v in (module, name)):
            raise PickleError("STACK_GLOBAL requires str")
        # A computed value, an imported object or a string not kept may be any str at load time.
        why = "STACK_GLOBAL with a module or name ocimodel cannot read (computed, or not a plain name)"
        shown = [v if isinstance(v, str) else "<computed>" for v in (module, name)]
        self.walk.refs.append(Ref(shown[0], shown[1], self.proto, danger=why))
        return self.push(OPAQUE)

    def op_INST(self) -> bool:
        module, name = self._two_lines("ascii")
        cls = self.global_(module, name)
        return self.push(self.call(cls, tuple(self.pop_mark())))

    def op_OBJ(self) -> bool:
        items = self.pop_mark()
        if not items:
            raise PickleError("OBJ without a class")
        return self.push(self.call(items[0], tuple(items[1:])))

    def op_REDUCE(self) -> bool:
        args = self.pop()
        func = self.top()
        if isinstance(args, (int, float, type(None), bool)) or args is NUMBER:
            raise PickleError("REDUCE arguments are not iterable")
        self.stack[-1] = self.call(func, args)
        return False

    def op_NEWOBJ(self) -> bool:
        args = self.pop()
        cls = self.pop()
        return self.push(self.call(cls, args, new=True))

    def op_NEWOBJ_EX(self) -> bool:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        return self.push(self.call(cls, (args, kwargs), new=True))

    def op_EXT1(self) -> bool:
        return self._ext(self.length(1))

    def op_EXT2(self) -> bool:
        return self._ext(self.length(2))

    def op_EXT4(self) -> bool:
        return self._ext(self.length(4, signed=True))

    def _ext(self, code: int) -> bool:
        if code <= 0:
            raise PickleError("EXT specifies code <= 0")
        why = "extension code: imports whatever global the loading process registered for it"
        self.walk.refs.append(Ref("copyreg", f"_extension_registry[{code}]", self.proto, danger=why))
        return self.push(OPAQUE)

    def op_PERSID(self) -> bool:
        try:
            self.line().decode("ascii")
        except UnicodeDecodeError:
            raise PickleError("persistent IDs in protocol 0 must be ASCII strings") from None
        return self.push(OPAQUE)

    def op_BINPERSID(self) -> bool:
        self._check_args((self.pop(),))
        return self.push(OPAQUE)  # torch's persistent_load returns a storage

    def op_BUILD(self) -> bool:
        state = self.pop()
        target = self.top()
        if isinstance(target, Global):
            self.hazard("BUILD on an imported object: sets attributes of a module-level object")
        elif isinstance(target, Call):
            self._escape(target, "given attributes")
            self._check_args((state,))
            self._build(target, state)
        return False

    def _build(self, target: Call, state: Any) -> None:
        target.state = state
        attrs = target.attrs if target.attrs is not None else {}
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        for part in (state, slots):
            if isinstance(part, dict):
                attrs.update(part)
        target.attrs = attrs
        cls = instance_class(target)
        if cls is UNKNOWN_CLASS:
            if self.joblib and self.wrapper_seen:
                raise Undecidable("an object built from a call ocimodel cannot follow may be a joblib array: "
                                  "cannot tell whether joblib reads array bytes here")
            return
        if isinstance(cls, Global) and cls.loaded == _WRAPPER:
            self.walk.wrappers += 1
            if self.joblib:
                from ._numpy import joblib_array_bytes

                self.stack[-1] = OPAQUE  # joblib swaps the wrapper for the array it reads
                size = joblib_array_bytes(attrs)
                if size is None:
                    self._nested_pickle()
                else:
                    self._inline_skip(size)

    # -- joblib's reads between opcodes ------------------------------------------------------

    def _file_pos(self) -> int:
        inp = self.inp
        return inp.jump_to if inp.jump_at >= 0 and inp.tell() < inp.jump_at else inp.tell()

    def _set_file_pos(self, pos: int) -> None:
        inp = self.inp
        if inp.jump_at >= 0 and inp.tell() < inp.jump_at:
            inp.jump_to = pos
        else:
            inp.seek(pos)

    def _inline_skip(self, size: tuple[int, int]) -> None:
        """Step over ``(padding byte?, data bytes)`` the way joblib's read_array reads them."""
        padded, nbytes = size
        pos = self._file_pos()
        if padded:
            if pos >= self.inp.size:
                raise PickleError("joblib array data truncated")
            pos += 1 + self.region.pread(pos, 1)[0]
        pos += nbytes
        if pos > self.inp.size:
            raise PickleError("joblib array data truncated")
        self._set_file_pos(pos)

    def _nested_pickle(self) -> None:
        """An object array: joblib calls pickle.load on its file handle (the C unpickler)."""
        nested = _Machine(self.region, self._file_pos(), self.walk, self.allow, self.budget, joblib=False)
        try:
            nested.run_one()
        finally:
            nested.close()
        self._set_file_pos(nested.inp.tell())

    # -- protocol, frames, buffers -----------------------------------------------------------

    def op_PROTO(self) -> bool:
        proto = self.length(1)
        if proto > 5:
            raise PickleError(f"unsupported pickle protocol: {proto}")
        self.proto = proto
        return False

    def op_FRAME(self) -> bool:
        size = self.length(8)
        if size > (1 << 63) - 1:
            raise PickleError("FRAME length exceeds the maximum")
        inp = self.inp
        end = min(inp.tell() + size, inp.size)
        if inp.jump_at >= 0 and inp.tell() < inp.jump_at:  # a frame inside a frame
            if self.joblib:
                raise PickleError("beginning of a new frame before end of current frame")
            if end > inp.jump_at:
                raise inp._crossed()
            return False  # C reads it from the frame it holds: nothing changes
        # The Python unpickler reads the frame whole (its file is then past it); C holds it in
        # its buffer. Either way reads stop at its end (see _Input).
        inp.jump_at, inp.jump_to = end, end
        if len(inp.buf) - inp.i > end - inp.tell():
            inp.buf = inp.buf[: inp.i + end - inp.tell()]
        return False

    def op_NEXT_BUFFER(self) -> bool:
        return self.push(OPAQUE)  # out-of-band buffers: no file loader passes any (it fails)

    def op_READONLY_BUFFER(self) -> bool:
        self.top()
        return False


def instance_class(call: Call) -> Any:
    """The class of what ``call`` returns, as a Global (or ``UNKNOWN_CLASS``)."""
    func = call.func
    if not isinstance(func, Global):
        return UNKNOWN_CLASS
    if call.new:
        return func
    if func.loaded in _RECONSTRUCTORS:
        args = call.args
        first = args[0] if isinstance(args, tuple) and args else None
        return first if isinstance(first, Global) else UNKNOWN_CLASS
    if func.loaded in _PASS_THROUGH:
        return UNKNOWN_CLASS
    return func


def _parse_int(data: bytes) -> int | None:
    """INT as either unpickler reads it: ``int(x, 0)`` (Python) or ``strtol(x, 0)`` (C)."""
    try:
        return int(data, 0)
    except ValueError:
        pass
    head = data.split(b"\0", 1)[0]
    if _STRTOL.match(head):
        text = head.strip().decode()
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        base = 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") else 10
        return sign * int(digits, base)
    return None


_OPCODES: dict[int, str] = {
    (ord(k) if isinstance(k, str) else k): v
    for k, v in dict[str | int, str]({
        "(": "MARK", ".": "STOP", "0": "POP", "1": "POP_MARK", "2": "DUP", "F": "FLOAT", "I": "INT",
        "J": "BININT", "K": "BININT1", "L": "LONG", "M": "BININT2", "N": "NONE", "P": "PERSID",
        "Q": "BINPERSID", "R": "REDUCE", "S": "STRING", "T": "BINSTRING", "U": "SHORT_BINSTRING",
        "V": "UNICODE", "X": "BINUNICODE", "a": "APPEND", "b": "BUILD", "c": "GLOBAL", "d": "DICT",
        "}": "EMPTY_DICT", "e": "APPENDS", "g": "GET", "h": "BINGET", "i": "INST", "j": "LONG_BINGET",
        "l": "LIST", "]": "EMPTY_LIST", "o": "OBJ", "p": "PUT", "q": "BINPUT", "r": "LONG_BINPUT",
        "s": "SETITEM", "t": "TUPLE", ")": "EMPTY_TUPLE", "u": "SETITEMS", "G": "BINFLOAT",
        "B": "BINBYTES", "C": "SHORT_BINBYTES", 0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2",
        0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE",
        0x8A: "LONG1", 0x8B: "LONG4", 0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8", 0x8E: "BINBYTES8",
        0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL",
        0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
    }).items()
}


def walk_pickles(
    region: Region, start: int, *, allow: AllowList, budget: Budget, joblib: bool = False, first_only: bool = False
) -> Walk:
    """Walk the pickle at ``start`` and, unless ``first_only``, the pickles right after it
    (legacy torch files hold five). An error in a later pickle ends the walk quietly: those
    bytes are data no loader unpickles, unless a limit was hit. Never raises for content."""
    walk = Walk(end=start)
    machine = _Machine(region, start, walk, allow, budget, joblib)
    try:
        return _walk(machine, walk, region, budget, first_only)
    finally:
        machine.close()


def _walk(machine: _Machine, walk: Walk, region: Region, budget: Budget, first_only: bool) -> Walk:
    while True:
        try:
            machine.run_one()
        except (PickleError, ScanLimitError, Undecidable) as exc:
            limit = not isinstance(exc, PickleError)
            if walk.pickles == 0 or limit:
                walk.error, walk.limit, walk.error_in = str(exc), limit, walk.pickles
                walk.error_at = machine.inp.tell() - walk.end
            return walk
        walk.pickles += 1
        walk.end = machine.inp.tell()
        if first_only or walk.end >= region.size:
            return walk
        if walk.pickles >= budget.limits.pickles:
            walk.error, walk.limit, walk.error_in = (
                f"more than {budget.limits.pickles} pickles in a row: stopped (scan limit 'pickles')", True, walk.pickles)
            return walk
