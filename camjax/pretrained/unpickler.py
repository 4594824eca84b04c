"""A pickle machine for ``.pth`` files that calls nothing from the file and can be budgeted.

It is not :class:`pickle.Unpickler`: that one calls whatever callables a file names
(``find_class`` can narrow them, but its BUILD opcode still writes into any object on the
stack, its C memo grows to the largest index a file names, and hashing a deeply nested
key recurses in C). This machine decodes opcodes with :func:`pickletools.genops` and
runs only the ones a tensor state dict needs:

- data: None, bools, ints, floats, str, bytes, lists, tuples and dicts whose keys are
  str, bytes, numbers or None (nested keys are refused, so hashing never recurses);
- five globals (:data:`ALLOWED_GLOBALS`): ``collections.OrderedDict`` (becomes a dict),
  torch's tensor and parameter rebuild functions (become checked, immutable
  :class:`~camjax.pretrained.tensors.TensorRecord`), and the storage types, which only
  appear inside persistent ids. Each load makes its own global tokens; nothing is shared.
- persistent ids ``("storage", type, key, location, numel[, view])``, each checked against
  the earlier ones for the same key;
- APPEND/SETITEM(S) only into lists/dicts the pickle made; BUILD only on a dict (the state
  dict's ``_metadata``, dropped). On a tensor, a storage or a global it is refused, so no
  record changes after its check.

Every other opcode (object construction, extension registry, sets, out-of-band buffers) is
refused by name. Each opcode and each byte read is charged to the load's
:class:`~camjax.pretrained.limits.Budget`, which bounds the memory its objects take.
"""

from __future__ import annotations

import pickletools
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from camjax.pretrained.limits import MAX_INT, Budget, CheckpointError, show
from camjax.pretrained.tensors import STORAGE_DTYPES, StorageRecord, TensorRecord, tensor_record

OP_COST = 256  # bytes charged per opcode: the largest object one opcode makes, with memo
MAX_LINE = 1 << 16  # text opcodes (GLOBAL, INT, ...) read lines of at most this length
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,128}\Z")

# (module, name) -> kind. Nothing else is reachable.
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("collections", "OrderedDict"): "dict",
    ("torch._utils", "_rebuild_tensor"): "tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "tensor",
    ("torch._utils", "_rebuild_parameter"): "parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "parameter",
    **{("torch", name): "storage" for name in STORAGE_DTYPES},
}


@dataclass(frozen=True, slots=True)
class Global:
    """A token for an allowed global, made afresh by each load."""

    module: str
    name: str
    kind: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


class Stream:
    """A file section that charges every byte read to ``budget`` before reading it and
    never reads past ``end`` (so a length field cannot make ``read`` allocate more)."""

    def __init__(self, f: BinaryIO, end: int, budget: Budget):
        self.f, self.end, self.budget = f, end, budget

    def tell(self) -> int:
        return self.f.tell()

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.end - self.f.tell())
        n = left if n is None or n < 0 else min(n, left)
        self.budget.charge(n, "the pickle's bytes")
        return self.f.read(n)

    def readline(self) -> bytes:
        n = min(MAX_LINE, max(0, self.end - self.f.tell()))
        self.budget.charge(n, "the pickle's bytes")
        return self.f.readline(n)


def kind_of(x: Any) -> str:
    """What ``x`` is, in words, for error messages (never its repr)."""
    if isinstance(x, TensorRecord):
        return "a tensor"
    if isinstance(x, StorageRecord):
        return "a storage"
    if isinstance(x, Global):
        return f"the global {x.qualname}"
    return f"a {type(x).__name__}"


def _key(value: Any) -> Any:
    if value is None or type(value) in (str, bytes, int, float, bool):
        return value
    raise CheckpointError(f"dict key is {kind_of(value)}; keys must be str, bytes or numbers")


class _Machine:
    def __init__(self, budget: Budget, storages: dict[str, StorageRecord]):
        self.budget, self.storages = budget, storages
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    # -- stack ---------------------------------------------------------------------
    def pop_mark(self) -> list[Any]:
        items, self.stack = self.stack, self.metastack.pop()
        return items

    def target(self, kind: type, op: str) -> Any:
        t = self.stack[-1]
        if type(t) is not kind:
            raise CheckpointError(f"{op} into {kind_of(t)}, not a {kind.__name__}")
        return t

    def set_items(self, items: list[Any], op: str) -> None:
        if len(items) % 2:
            raise CheckpointError(f"{op} with an odd number of items")
        d = self.target(dict, op)
        for i in range(0, len(items), 2):
            d[_key(items[i])] = items[i + 1]

    # -- globals, calls, persistent ids ---------------------------------------------
    def find_global(self, module: Any, name: Any) -> Global:
        kind = ALLOWED_GLOBALS.get((module, name)) if type(module) is type(name) is str else None
        if kind is None:
            raise CheckpointError(
                f"refusing to load global {show(module, 80)[1:-1]}.{show(name, 80)[1:-1]}: "
                "a tensor state dict never needs it, and unpickling it could run code"
            )
        return Global(module, name, kind)

    def reduce(self, func: Any, args: Any) -> Any:
        if not isinstance(func, Global) or func.kind == "storage":
            raise CheckpointError(f"pickle calls {kind_of(func)}, which is not a callable global")
        if type(args) is not tuple:
            raise CheckpointError(f"{func.qualname} called with {kind_of(args)}, not a tuple")
        if func.kind == "dict":
            if not args:
                return {}
            if len(args) == 1 and type(args[0]) is list:
                pairs = args[0]
                if all(type(p) in (list, tuple) and len(p) == 2 for p in pairs):
                    return {_key(k): v for k, v in pairs}
            raise CheckpointError(f"{func.qualname} called with {show(args)}")
        if func.kind == "tensor" and len(args) >= 4:
            return tensor_record(*args[:4])
        if func.kind == "parameter" and args and isinstance(args[0], TensorRecord):
            return args[0]
        raise CheckpointError(f"{func.qualname} called with unexpected arguments")

    def persistent_load(self, pid: Any) -> StorageRecord:
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {show(pid)}")
        stype, key, location, numel = pid[1:5]
        if not (isinstance(stype, Global) and stype.kind == "storage"):
            raise CheckpointError(f"persistent id names {kind_of(stype)}, not a storage type")
        key = key.decode("ascii", "replace") if type(key) is bytes else key
        if type(key) is not str or not _KEY.match(key) or type(location) not in (str, bytes):
            raise CheckpointError(f"storage key {show(key)} or location {show(location)}")
        if type(numel) is not int or not 0 <= numel <= MAX_INT:
            raise CheckpointError(f"storage {key!r} of {show(numel)} elements")
        dtype = STORAGE_DTYPES[stype.name]
        root = StorageRecord(key, stype.name, dtype, numel, 0, numel)
        seen = self.storages.setdefault(key, root)
        if (seen.type_name, seen.numel) != (stype.name, numel):
            raise CheckpointError(
                f"storage {key!r} is named as {seen.numel} x {seen.type_name} and as "
                f"{numel} x {stype.name}"
            )
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        # Legacy view of the root storage: (view_key, offset, size), in elements.
        if not (type(view) is tuple and len(view) == 3):
            raise CheckpointError(f"storage {key!r}: view {show(view)}")
        _, start, count = view
        if not (type(start) is type(count) is int and 0 <= start <= start + count <= numel):
            raise CheckpointError(f"storage {key!r}: view of {show(count)} from {show(start)}")
        return StorageRecord(key, stype.name, dtype, numel, start, count)

    # -- the opcodes ---------------------------------------------------------------
    def run(self, op: str, arg: Any) -> None:
        s = self.stack
        if op in _PUSH_ARG:
            s.append(arg)
        elif op in _PUSH_CONST:
            s.append(_PUSH_CONST[op])
        elif op == "MARK":
            self.metastack.append(s)
            self.stack = []
        elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(op[-1])
            if len(s) < n:
                raise IndexError(op)
            s[-n:] = [tuple(s[-n:])]
        elif op in ("TUPLE", "LIST"):
            items = self.pop_mark()
            self.stack.append(tuple(items) if op == "TUPLE" else items)
        elif op == "DICT":
            items = self.pop_mark()
            self.stack.append({})
            self.set_items(items, op)
        elif op == "APPEND":
            v = s.pop()
            self.target(list, op).append(v)
        elif op == "APPENDS":
            items = self.pop_mark()
            self.target(list, op).extend(items)
        elif op == "SETITEM":
            v, k = s.pop(), s.pop()
            self.set_items([k, v], op)
        elif op == "SETITEMS":
            self.set_items(self.pop_mark(), op)
        elif op == "POP":
            if s:
                s.pop()
            else:
                self.pop_mark()
        elif op == "POP_MARK":
            self.pop_mark()
        elif op == "DUP":
            s.append(s[-1])
        elif op in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise CheckpointError(f"pickle reads memo entry {show(arg)}, never written")
            s.append(self.memo[arg])
        elif op in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(self.memo) if op == "MEMOIZE" else arg
            if type(index) is not int or index < 0:
                raise CheckpointError(f"memo index {show(index)}")
            self.memo[index] = s[-1]
        elif op == "GLOBAL":
            module, _, name = arg.partition(" ")
            s.append(self.find_global(module, name))
        elif op == "STACK_GLOBAL":
            name, module = s.pop(), s.pop()
            s.append(self.find_global(module, name))
        elif op == "REDUCE":
            args, func = s.pop(), s.pop()
            s.append(self.reduce(func, args))
        elif op == "BUILD":
            state, obj = s.pop(), s[-1]
            if type(obj) is not dict or not (state is None or type(state) is dict):
                raise CheckpointError(
                    f"BUILD on {kind_of(obj)} (state {kind_of(state)}): only a state dict's "
                    "OrderedDict takes a state; anything else would rewrite a checked record"
                )
        elif op in ("PERSID", "BINPERSID"):
            s.append(self.persistent_load(arg if op == "PERSID" else s.pop()))
        elif op not in ("PROTO", "FRAME"):
            raise CheckpointError(f"pickle opcode {op} is not allowed in a weight file")


_PUSH_ARG = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
}  # fmt: skip
_PUSH_CONST: dict[str, Any] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def _fresh(op: str) -> Any:
    return {"EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_TUPLE": tuple}[op]()


def unpickle(stream: Stream, storages: dict[str, StorageRecord]) -> Any:
    """Run one pickle from ``stream`` (up to its STOP); storage ids go into ``storages``.

    Raises :class:`CheckpointError` for anything refused, corrupt or truncated.
    """
    m = _Machine(stream.budget, storages)
    op = "(start)"
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            op = opcode.name
            stream.budget.charge(OP_COST, "the pickle's objects")
            if op == "STOP":
                if len(m.stack) != 1 or m.metastack:
                    raise CheckpointError("pickle stops with a malformed stack")
                return m.stack.pop()
            if op in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE"):
                m.stack.append(_fresh(op))
            else:
                m.run(op, arg)
    except CheckpointError:
        raise
    except (IndexError, KeyError) as e:
        raise CheckpointError(f"corrupt pickle: stack or mark underflow at {op}") from e
    except (ValueError, TypeError, EOFError, UnicodeError, OverflowError) as e:
        raise CheckpointError(f"corrupt or truncated pickle at {op}: {str(e)[:200]}") from e
    raise CheckpointError("truncated pickle: no STOP")


__all__ = ["ALLOWED_GLOBALS", "OP_COST", "Global", "Stream", "unpickle"]
