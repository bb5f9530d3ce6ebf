"""Walk pickle opcodes without executing them, listing the globals a load would import.

``pickletools.genops`` only decodes opcodes: it never imports or calls anything. On top of it
a small symbolic stack follows just enough values (strings, numbers, tuples, dicts, the memo)
to resolve STACK_GLOBAL exactly and to step over the raw array bytes joblib writes between
the opcodes of its pickles. Several pickles in a row (legacy torch files) are walked in turn;
bytes after the last one that are not a pickle are left alone (no loader unpickles them).
"""

from __future__ import annotations

import math
import pickletools
import re
from dataclasses import dataclass, field
from typing import Any, Protocol


class PickleSource(Protocol):
    """What the walk reads from: a seekable binary stream (a file, or the scanner's bounded view)."""

    def read(self, n: int = -1, /) -> bytes: ...

    def readline(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

MAX_OPCODES = 5_000_000  # per stream, all pickles together
MAX_PICKLES = 64  # consecutive pickles in one stream
COMPUTED = "<computed>"  # module/name of a STACK_GLOBAL whose strings we cannot know


class PickleWalkError(Exception):
    """The stream is not a pickle we could walk to its end (message fit for a person)."""


@dataclass
class Walk:
    """What a walk found: ``(module, name, forced_reason)`` triples, even when it stopped early."""

    refs: list[tuple[str, str, str | None]] = field(default_factory=list)
    pickles: int = 0
    trailing: int = 0  # bytes after the last pickle
    error: str | None = None  # why the walk stopped before the end


class _Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Call:
    __slots__ = ("func", "args", "state")

    def __init__(self, func: Any, args: Any) -> None:
        self.func, self.args, self.state = func, args, None


class _Opaque:
    """A value we do not follow (each instance distinct, so usable as a dict key)."""

    __slots__ = ()


_MARK = object()
_PUSH_ARG = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_DTYPE_DESCR = re.compile(r"[<>|=]?([A-Za-z?])(\d*)\Z")


class _Walker:
    def __init__(self, stream: PickleSource) -> None:
        self.stream = stream
        self.budget = MAX_OPCODES
        self.walk = Walk()

    # -- the stream of pickles -------------------------------------------------------------

    def run(self) -> Walk:
        while True:
            self.walk_one()
            self.walk.pickles += 1
            head = self.stream.read(2)
            if not head:
                return self.walk
            self.stream.seek(-len(head), 1)
            if not (head[0] == 0x80 and len(head) == 2 and head[1] <= 5):
                self.walk.trailing = self._remaining()
                return self.walk
            if self.walk.pickles >= MAX_PICKLES:
                raise PickleWalkError(f"more than {MAX_PICKLES} pickles in a row: stopped")

    def _remaining(self) -> int:
        here = self.stream.tell()
        end = self.stream.seek(0, 2)
        self.stream.seek(here)
        return end - here

    # -- one pickle --------------------------------------------------------------------------

    def walk_one(self) -> None:
        stack: list[Any] = []
        memo: dict[int, Any] = {}
        try:
            for op, arg, pos in pickletools.genops(self.stream):  # type: ignore[arg-type]  # duck-typed stream
                self.budget -= 1
                if self.budget < 0:
                    raise PickleWalkError(f"more than {MAX_OPCODES} opcodes: stopped")
                try:
                    self._step(op, arg, stack, memo)
                except (IndexError, KeyError, TypeError) as exc:
                    problem = f"{op.name} ({type(exc).__name__})"
                    raise PickleWalkError(f"malformed pickle at byte {pos}: {problem}") from None
        except PickleWalkError:
            raise
        except Exception as exc:  # genops' ValueError, decoding errors, short reads...
            raise PickleWalkError(f"not a valid pickle: {exc}") from None

    def _step(self, op: pickletools.OpcodeInfo, arg: Any, stack: list[Any], memo: dict[int, Any]) -> None:
        name = op.name
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise IndexError("stack underflow")
            popped = tuple(stack[-n:])
            del stack[-n:]
            stack.append(popped)
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET", "POP_MARK"):
            items = _pop_mark(stack)
            if name == "TUPLE":
                stack.append(tuple(items))
            elif name == "LIST":
                stack.append(items)
            elif name == "DICT":
                stack.append(_setitems({}, items))
            elif name == "FROZENSET":
                stack.append(_Opaque())
        elif name == "APPEND":
            value = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(value)
        elif name == "APPENDS":
            items = _pop_mark(stack)
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            _setitems(stack[-1], [key, value])
        elif name == "SETITEMS":
            items = _pop_mark(stack)
            _setitems(stack[-1], items)
        elif name in ("GLOBAL", "INST"):
            module, _, attr = arg.partition(" ")
            self._ref(module, attr)
            if name == "INST":
                stack.append(_Call(_Global(module, attr), tuple(_pop_mark(stack))))
            else:
                stack.append(_Global(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            if isinstance(module, str) and isinstance(attr, str):
                self._ref(module, attr)
                stack.append(_Global(module, attr))
            else:
                self._ref(
                    module if isinstance(module, str) else COMPUTED,
                    attr if isinstance(attr, str) else COMPUTED,
                    "STACK_GLOBAL with names not given as plain strings: cannot tell what is imported",
                )
                stack.append(_Opaque())
        elif name in ("EXT1", "EXT2", "EXT4"):
            why = "extension-registry global: cannot be resolved statically"
            self._ref("copyreg", f"_extension_registry[{arg}]", why)
            stack.append(_Opaque())
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "NEWOBJ_EX":
            stack.pop()
            args = stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "OBJ":
            items = _pop_mark(stack)
            stack.append(_Call(items[0], tuple(items[1:])))
        elif name == "BUILD":
            state = stack.pop()
            self._build(stack[-1], state)
        else:
            _generic(op, stack)

    def _ref(self, module: str, name: str, forced: str | None = None) -> None:
        self.walk.refs.append((module, name, forced))

    # -- joblib's arrays inside the pickle -------------------------------------------------

    def _build(self, obj: Any, state: Any) -> None:
        if not isinstance(obj, _Call):
            return
        obj.state = state
        func = obj.func
        if isinstance(func, _Global) and (func.module, func.name) == _JOBLIB_WRAPPER and isinstance(state, dict):
            self._skip_joblib_array(state)

    def _skip_joblib_array(self, state: dict[Any, Any]) -> None:
        """Step over the array joblib wrote right after the wrapper (joblib's write_array)."""
        shape, dtype = state.get("shape"), state.get("dtype")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise PickleWalkError("joblib array with an unreadable shape: cannot step over its data")
        itemsize, has_object = _dtype_layout(dtype)
        if has_object:
            self.walk_one()  # object arrays are written as a nested pickle
            return
        if itemsize is None:
            raise PickleWalkError("joblib array of a dtype we cannot size: cannot step over its data")
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self.stream.read(1)
            if not pad:
                raise PickleWalkError("joblib array data truncated")
            self._skip(pad[0])
        self._skip(math.prod(shape) * itemsize)

    def _skip(self, n: int) -> None:
        if n > self._remaining():
            raise PickleWalkError("joblib array data truncated")
        self.stream.seek(n, 1)


def _dtype_layout(dtype: Any) -> tuple[int | None, bool]:
    """``(itemsize, has_object)`` of a symbolically rebuilt numpy dtype."""
    args = dtype.args if isinstance(dtype, _Call) else None
    if not (isinstance(args, tuple) and args and isinstance(args[0], str)):
        return None, False
    match = _DTYPE_DESCR.match(args[0])
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if (match and match.group(1) == "O") or flags & 1:  # NPY_ITEM_REFCOUNT: holds objects
        return None, True
    if len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        return state[5], False
    if match and match.group(2):
        return int(match.group(2)), False
    if match and match.group(1) in "?bB":
        return 1, False
    return None, False


def _pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise IndexError("no mark")


def _setitems(target: Any, items: list[Any]) -> Any:
    if isinstance(target, dict):
        for key, value in zip(items[::2], items[1::2]):
            try:
                target[key] = value
            except TypeError:  # an unhashable key: not needed for anything we follow
                pass
    return target


def _generic(op: pickletools.OpcodeInfo, stack: list[Any]) -> None:
    """Apply an opcode's documented stack effect with values we do not follow."""
    before = op.stack_before
    if pickletools.markobject in before:
        _pop_mark(stack)
        count = before.index(pickletools.markobject)
    else:
        count = len(before)
    if count > len(stack):
        raise IndexError("stack underflow")
    if count:
        del stack[-count:]
    for kind in op.stack_after:
        stack.append(_MARK if kind is pickletools.markobject else _Opaque())


def walk_pickles(stream: PickleSource) -> Walk:
    """Walk the pickle(s) at the stream's position; never raises for bad content."""
    walker = _Walker(stream)
    try:
        return walker.run()
    except PickleWalkError as exc:
        walker.walk.error = str(exc)
        return walker.walk
