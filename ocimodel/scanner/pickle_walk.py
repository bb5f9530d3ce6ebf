"""Walk pickle opcodes the way CPython's unpicklers read them, executing nothing.

The walk accepts what either of CPython's unpicklers accepts (see :mod:`.pickle_opcodes`);
values are followed symbolically (:mod:`.pickle_stack`) just far enough to resolve every global
exactly and to step over the array bytes joblib writes between its opcodes. Where the real
unpicklers would raise, the walk stops too: what came before the error still ran and is
reported.

Two modes: ``joblib=False`` is ``pickle.load`` (frames are transparent, nothing is read
between opcodes); ``joblib=True`` is joblib's ``NumpyUnpickler``: the Python unpickler's frame
rules, and after each ``NumpyArrayWrapper`` is built, its array bytes (or, for object arrays,
a nested pickle) are read from the file at the position the Python unpickler leaves its file.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from .limits import Budget, ScanLimitError
from .numpy_arrays import joblib_array_bytes
from .pickle_input import PickleInput
from .pickle_opcodes import COUNTED, OPCODES, OpcodeHandlers
from .pickle_values import PickleError, Region, Undecidable, Walk
from .rules import AllowList


class Machine(OpcodeHandlers):
    """One pickle walk over ``region`` from ``pos``: the opcode loop, and joblib's reads."""

    def __init__(self, region: Region, pos: int, walk: Walk, allow: AllowList, budget: Budget, joblib: bool) -> None:
        super().__init__(PickleInput(region, pos, PickleError if joblib else Undecidable), walk, allow, budget, joblib)
        self.region = region
        self.handlers: list[Callable[[], bool] | None] = [None] * 256
        for code, name in OPCODES.items():
            if name in COUNTED:
                self.handlers[code] = functools.partial(self.op_counted, *COUNTED[name])
            else:
                self.handlers[code] = getattr(self, "op_" + name)

    def close(self) -> None:
        """Drop the walk's values now: the handler table is a reference cycle that would
        otherwise keep them (up to the 'memo' limit of them) until the cyclic GC runs."""
        self.reset()
        self.handlers = []

    def run_one(self) -> None:
        """Walk one pickle to its STOP (raises PickleError, ScanLimitError, Undecidable)."""
        self.reset()
        try:
            self._run()
        finally:
            self.finish_getattrs()

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
                self.check_limits()
            if handler():
                return

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
        nested = Machine(self.region, self._file_pos(), self.walk, self.allow, self.budget, joblib=False)
        try:
            nested.run_one()
        finally:
            nested.close()
        self._set_file_pos(nested.inp.tell())

    def read_joblib_array(self, attrs: dict[Any, Any]) -> None:
        size = joblib_array_bytes(attrs)
        if size is None:
            self._nested_pickle()
        else:
            self._inline_skip(size)


def walk_pickles(
    region: Region, start: int, *, allow: AllowList, budget: Budget, joblib: bool = False, first_only: bool = False
) -> Walk:
    """Walk the pickle at ``start`` and, unless ``first_only``, the pickles right after it
    (legacy torch files hold five). An error in a later pickle ends the walk quietly: those
    bytes are data no loader unpickles, unless a limit was hit. Never raises for content."""
    walk = Walk(end=start)
    machine = Machine(region, start, walk, allow, budget, joblib)
    try:
        return _walk(machine, walk, region, budget, first_only)
    finally:
        machine.close()


def _walk(machine: Machine, walk: Walk, region: Region, budget: Budget, first_only: bool) -> Walk:
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
