"""numpy dtypes as a pickle or an .npy header spells them: does an array hold Python
objects (then loading it unpickles), and how many bytes does joblib read for one.

Only spellings known for certain are decided; anything else is left undecided (the caller
then reports the file as not fully inspected, never as safe).
"""

from __future__ import annotations

import re
from typing import Any

from .pickle_values import Call, Global, PickleError, Undecidable

# descr strings of dtypes that hold no object: [byte order] kind [size] [datetime unit]
_PLAIN = re.compile(
    r"[<>|=]?(?:[?bBhHiIlLqQpPefdgFDGSUVa]|b1|[iu][1248]|f(?:2|4|8|10|12|16)|c(?:8|16|20|24|32)|[SUVa]\d+"
    r"|[Mm]8(?:\[\d*(?:Y|M|W|D|h|m|s|ms|us|μs|ns|ps|fs|as|generic)\])?)\Z"
)
_OBJECT = re.compile(r"[<>|=]?(?:O\d*|object_?|object0)\Z")
_SIZES = {"?": 1, "b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "l": 8, "L": 8, "q": 8, "Q": 8, "p": 8, "P": 8,
          "e": 2, "f": 4, "d": 8, "g": 16, "F": 8, "D": 16, "G": 32}
_NPY_ITEM_REFCOUNT = 0x01


def npy_holds_objects(descr: Any, depth: int = 0) -> bool | None:
    """For an .npy header's ``descr``: True if the array holds Python objects (numpy.load
    then unpickles the rest of the file), False if not, None if the spelling is unknown."""
    if depth > 32:
        return None
    if isinstance(descr, str):
        if _OBJECT.match(descr):
            return True
        return False if _PLAIN.match(descr) else None
    if isinstance(descr, tuple) and len(descr) == 2:  # (base, shape): a subarray
        return npy_holds_objects(descr[0], depth + 1)
    if isinstance(descr, list):  # structured: [(name, descr[, shape]), ...]
        verdicts = []
        for entry in descr:
            if not (isinstance(entry, tuple) and len(entry) in (2, 3)):
                return None
            verdicts.append(npy_holds_objects(entry[1], depth + 1))
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    return None


def _dtype_layout(dtype: Any, depth: int = 0) -> tuple[int, bool]:
    """``(itemsize, holds_objects)`` of a dtype a pickle rebuilds as numpy.dtype(descr, ...)
    followed by BUILD with numpy's state tuple."""
    if depth > 16 or not (isinstance(dtype, Call) and isinstance(dtype.func, Global)
                          and dtype.func.loaded in ("numpy.dtype",) and isinstance(dtype.args, tuple)
                          and dtype.args and isinstance(dtype.args[0], str)):
        raise Undecidable("a joblib array whose dtype ocimodel cannot read: cannot tell how joblib reads it")
    descr = dtype.args[0]
    state = dtype.state if isinstance(dtype.state, tuple) else None
    flags = state[7] if state is not None and len(state) > 7 and isinstance(state[7], int) else None
    elsize = state[5] if state is not None and len(state) > 5 and isinstance(state[5], int) else None
    fields = state[4] if state is not None and len(state) > 4 else None
    is_object = bool(_OBJECT.match(descr))
    if flags is not None and bool(flags & _NPY_ITEM_REFCOUNT) != is_object and not descr.startswith("V"):
        raise Undecidable(f"a joblib array dtype {descr!r} whose flags say otherwise: cannot tell how joblib reads it")
    if is_object:
        return 8, True
    if not _PLAIN.match(descr):
        raise Undecidable(f"a joblib array of dtype {descr!r}: cannot tell how joblib reads it")
    kind = descr.lstrip("<>|=")
    if kind[0] in "SUVa":
        size = elsize if elsize is not None and elsize >= 0 else int(kind[1:] or 0) * (4 if kind[0] == "U" else 1)
        has_objects = False
        if kind[0] == "V":
            if isinstance(fields, dict):
                for value in fields.values():
                    if not (isinstance(value, tuple) and value):
                        raise Undecidable("a structured joblib array dtype ocimodel cannot read")
                    has_objects = has_objects or _dtype_layout(value[0], depth + 1)[1]
            elif fields is not None:
                raise Undecidable("a structured joblib array dtype ocimodel cannot read")
            if flags is not None and bool(flags & _NPY_ITEM_REFCOUNT) != has_objects:
                raise Undecidable("a structured joblib array dtype whose flags say otherwise")
        return size, has_objects
    if kind[0] in "Mm":
        return 8, False
    if kind in _SIZES:
        return _SIZES[kind], False
    return int(kind[1:]), False


def joblib_array_bytes(attrs: dict[Any, Any]) -> tuple[bool, int] | None:
    """What joblib's NumpyArrayWrapper.read_array reads after the wrapper is built:
    ``(padding byte first?, data bytes)``, or None for an object array (a nested pickle)."""
    if "shape" not in attrs or "dtype" not in attrs:
        raise PickleError("joblib array wrapper without shape or dtype")
    shape = attrs["shape"]
    if not isinstance(shape, (tuple, list)) or not all(isinstance(n, int) for n in shape):
        raise Undecidable("a joblib array whose shape is not plain integers: cannot tell how much joblib reads")
    itemsize, has_objects = _dtype_layout(attrs["dtype"])
    if has_objects:
        return None
    count = 1
    for n in shape:
        if not -(1 << 63) <= n < (1 << 63):
            raise PickleError("joblib array dimension does not fit in int64")
        count = (count * n) & ((1 << 64) - 1)  # numpy.multiply.reduce over int64 wraps around
    if count >= 1 << 63:
        raise PickleError("negative joblib array size")
    if not shape:
        count = 1
    return attrs.get("numpy_array_alignment_bytes") is not None, count * itemsize


__all__ = ["joblib_array_bytes", "npy_holds_objects"]
