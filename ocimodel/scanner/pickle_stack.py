"""The symbolic state of a pickle walk: the stack, the memo, and what each value would be.

Values are followed just far enough to resolve every global exactly (strings that could name
a module, numbers, tuples, lists, dicts, the memo, what each call was given), to notice
getattr and gadget chains, and to tell where joblib reads array bytes. Where the real
unpicklers would raise, :class:`PickleError` is raised too: the load stops there.
"""

from __future__ import annotations

import re
from typing import Any

from .limits import Budget, ScanLimitError
from .pickle_input import PickleInput
from .pickle_values import (
    BLOB,
    GETATTR,
    KEEP,
    OPAQUE,
    TEXT,
    UNKNOWN_CLASS,
    WRAPPER,
    Call,
    Global,
    PickleError,
    Ref,
    Undecidable,
    Walk,
    instance_class,
)
from .rules import AllowList

CONTAINER_KEEP = 256  # items kept per list/dict/set (more are checked, not stored)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_PUBLIC = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_MAX_NESTED_CHECK = 10_000  # values looked at when checking where a getattr result went
_KEPT_CHARS = 32 << 20  # characters of names kept per walk (beyond: not kept, so never resolved)


class SymbolicStack:
    """A pickle's stack, metastack and memo, holding symbolic values, and the walk it reports to."""

    def __init__(self, inp: PickleInput, walk: Walk, allow: AllowList, budget: Budget, joblib: bool) -> None:
        self.inp = inp
        self.walk = walk
        self.allow = allow
        self.budget = budget
        self.joblib = joblib
        self.limits = budget.limits
        self.reset()

    def reset(self) -> None:
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.meta_items = 0
        self.memo: list[Any] = []
        self.sparse: dict[int, Any] = {}
        self.proto = 0
        self.getattrs: list[Global] = []  # getattr globals of this pickle (Enum members, Python >= 3.12)
        self.wrapper_seen = False

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

    def global_(self, module: str, name: str) -> Global:
        ref = Ref(module, name, self.proto)
        self.walk.refs.append(ref)
        value = Global(module, name, self.proto, ref)
        if value.loaded == GETATTR:
            self.getattrs.append(value)
        if value.loaded == WRAPPER:
            self.wrapper_seen = self.walk.wrapper_global = True
        return value

    def hazard(self, why: str) -> None:
        if why not in self.walk.hazards:
            self.walk.hazards.append(why)

    def finish_getattrs(self) -> None:
        """getattr(C, "NAME") on an allowed class, whose result is only kept as data, is how
        Python >= 3.12 pickles some Enum members: not dangerous. Any other use is."""
        for g in self.getattrs:
            if g.ref.danger is None and g.enum_uses:
                g.ref.exempt = "getattr(C, 'NAME') on an allowed class, result kept as data (an Enum member)"

    def _escape(self, value: Any, why: str) -> None:
        """``value`` went where getattr, or what it returned, must never go."""
        if isinstance(value, Global) and value.loaded == GETATTR:
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
            if func.loaded == GETATTR and not new and self._enum_access(func, args):
                result = Call(func, args)
                result.enum = True
                return result
            if func.loaded == GETATTR:
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
        if cls.loaded == GETATTR or not self.allow.judge(cls.module, cls.name, cls.ref.proto).allowed:
            return False
        func.enum_uses += 1
        return True

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

    def setitems(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise PickleError("odd number of items for SETITEMS")
        if isinstance(target, Global):
            self.hazard("SETITEM on an imported object: modifies a module-level object")
        for k, v in zip(items[::2], items[1::2]):
            if isinstance(target, dict):
                try:
                    if len(target) < CONTAINER_KEEP or k in target:
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

    def _append(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            room = CONTAINER_KEEP - len(target)
            if room > 0:
                target.extend(items[:room])
        elif isinstance(target, Global):
            self.hazard("APPEND on an imported object: modifies a module-level object")
        elif isinstance(target, (tuple, dict, set, str, bytes, int, float, type(None))):
            raise PickleError(f"{type(target).__name__} object has no attribute 'append'")
        elif isinstance(target, Call):
            self._escape(target, "modified")
            self._check_args(tuple(items))

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
        if isinstance(cls, Global) and cls.loaded == WRAPPER:
            self.walk.wrappers += 1
            if self.joblib:
                self.stack[-1] = OPAQUE  # joblib swaps the wrapper for the array it reads
                self.read_joblib_array(attrs)

    def check_limits(self) -> None:
        if self.budget.opcodes < 0:
            raise ScanLimitError(f"more than {self.limits.opcodes} pickle opcodes: stopped (scan limit 'opcodes')")
        if len(self.stack) + self.meta_items > self.limits.memo or len(self.memo) + len(self.sparse) > self.limits.memo:
            raise ScanLimitError(f"a pickle holding more than {self.limits.memo} values: stopped (scan limit 'memo')")
        self.budget.check_time()

    def read_joblib_array(self, attrs: dict[Any, Any]) -> None:
        """joblib reads an array's bytes from the file right after its wrapper is built."""
        raise NotImplementedError
