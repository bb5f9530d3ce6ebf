"""The pickle opcodes, decoded as CPython's unpicklers decode them (protocols 0-5).

Text integers in any base ``int(x, 0)`` or C's ``strtol`` reads (``I0x1``), frames, memo
tricks, several pickles in a row: what either unpickler accepts (the C one ``pickle.load`` and
``torch.load`` use, the Python one joblib uses) is accepted, and each opcode's effect is
applied to the symbolic stack (:mod:`.pickle_stack`).
"""

from __future__ import annotations

import codecs
import re
import struct
from typing import Any

from .pickle_input import LINE_KEEP
from .pickle_stack import CONTAINER_KEEP, SymbolicStack
from .pickle_values import KEEP, NUMBER, OPAQUE, TEXT, Call, Global, PickleError, Ref

_STRTOL = re.compile(rb"\s*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
# length-prefixed payload opcodes: (bytes of the length, what the payload is)
COUNTED = {
    "SHORT_BINSTRING": (1, "latin"), "BINBYTES": (4, "bytes"), "SHORT_BINBYTES": (1, "bytes"), "BINBYTES8": (8, "bytes"),
    "BINUNICODE": (4, "str"), "SHORT_BINUNICODE": (1, "str"), "BINUNICODE8": (8, "str"),
}


class OpcodeHandlers(SymbolicStack):
    """One ``op_NAME`` method per opcode: read its argument, apply it; True only for STOP."""

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
        if len(data) >= LINE_KEEP:
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
            if len(data) >= LINE_KEEP:
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
            if len(data) >= LINE_KEEP - 1:
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
        if len(data) >= LINE_KEEP:
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
        if len(data) >= LINE_KEEP:
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
        return self.push(self.pop_mark()[:CONTAINER_KEEP])

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
        if not items:  # _pickle does nothing, whatever the target is (pickle.py would raise)
            return False
        if isinstance(target, Global):
            self.hazard("ADDITEMS on an imported object: modifies a module-level object")
        if isinstance(target, set):
            try:
                for item in items:
                    if len(target) < CONTAINER_KEEP:
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
        target = self.top()
        if items:  # none: _pickle does nothing, whatever the target is, and reads on
            self._append(target, items)
        return False

    def op_SETITEM(self) -> bool:
        value, key = self.pop(), self.pop()
        self.setitems(self.top(), [key, value])
        return False

    def op_SETITEMS(self) -> bool:
        items = self.pop_mark()
        target = self.top()
        if items:  # none: _pickle does nothing, whatever the target is, and reads on
            self.setitems(target, items)
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
                raise inp.crossed()
            return False  # C reads it from the frame it holds: nothing changes
        # The Python unpickler reads the frame whole (its file is then past it); C holds it in
        # its buffer. Either way reads stop at its end (see PickleInput).
        inp.jump_at, inp.jump_to = end, end
        if len(inp.buf) - inp.i > end - inp.tell():
            inp.buf = inp.buf[: inp.i + end - inp.tell()]
        return False

    def op_NEXT_BUFFER(self) -> bool:
        return self.push(OPAQUE)  # out-of-band buffers: no file loader passes any (it fails)

    def op_READONLY_BUFFER(self) -> bool:
        self.top()
        return False


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


OPCODES: dict[int, str] = {
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
