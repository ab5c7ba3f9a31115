"""Shape tracing: `LoggingModule`, the `@log_io` decorator, and the `trace` context manager.

Every module in mnemo subclasses `LoggingModule`; methods worth seeing carry `@log_io`. Tracing is off
by default, and then it costs nothing at all: `@log_io` only marks a method, and `trace` puts a recording
wrapper on the traced module instances for the duration of the `with` block, then takes it away. Inside

    with trace(model, depth=2, only=("attn",), stats=False, keep=False) as t:
        model(x)

each decorated call of the selected modules becomes an `Event` (module path, class, function, every
argument by name with its shape and dtype, the outputs likewise, nested calls as children). `print(t)`
renders them as stable indented text (nbval compares it); in a notebook `t.show()` renders the same
tree as collapsible HTML. With `keep=True` the tensors themselves are kept, under TransformerLens-like
names (`t.cache["blocks.0.attn.forward.out"]`). Statistics (min/max/mean) are opt-in: they force a sync.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import inspect
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn


class LoggingModule(nn.Module):
    """An `nn.Module` whose `@log_io` methods can be traced."""
    _tracer = None  # the active Trace, set on the instance by `trace` only while it is traced


def log_io(fn):
    """Mark a method as worth tracing. The mark is free: `trace` wraps marked methods of the traced instances
    only inside its `with` block, so a model that is not traced runs the plain functions."""
    fn.log_io = True
    return fn


@functools.cache
def traced_methods(cls) -> tuple:
    """(name, function, signature) of every `@log_io` method of a class; an undecorated override hides a
    decorated method of a base class."""
    out, seen = [], set()
    for klass in cls.__mro__:
        for name, fn in vars(klass).items():
            if name not in seen:
                seen.add(name)
                if getattr(fn, "log_io", False):
                    out.append((name, fn, inspect.signature(fn)))
    return tuple(out)


def _recorder(t: "Trace", module, fn, signature):
    """`module.fn` as it runs while traced: every call goes through `t.record`."""
    def call(*args, **kwargs):
        return t.record(module, fn, signature, args, kwargs)
    return call


@dataclass
class Event:
    """One traced call."""
    path: str                     # module path inside the traced model, "" for the root
    module: str                   # class name
    fn: str                       # method name
    inputs: list = field(default_factory=list)     # [(name, description)]
    outputs: list = field(default_factory=list)    # [(name, description)]
    children: list = field(default_factory=list)   # nested Events

    @property
    def name(self) -> str:
        return f"{self.path}.{self.fn}" if self.path else self.fn

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


class Trace:
    """The recorded calls of one `trace` block: a forest of `Event`s, plus kept tensors if asked."""

    def __init__(self, stats: bool = False, keep: bool = False):
        self.stats, self.keep = stats, keep
        self.roots: list[Event] = []
        self.cache: dict[str, torch.Tensor] = {}
        self._stack: list[Event] = []
        self._paths: dict[int, str] = {}

    # --- recording ----------------------------------------------------------------------------
    def record(self, module, fn, signature, args, kwargs):
        bound = signature.bind(module, *args, **kwargs)
        event = Event(self._paths[id(module)], type(module).__name__, fn.__name__)
        for name, value in list(bound.arguments.items())[1:]:  # skip self
            if value is None:
                continue  # an argument left at None says nothing about shapes
            event.inputs.extend(self._describe(name, value, event))
        (self._stack[-1].children if self._stack else self.roots).append(event)
        self._stack.append(event)
        try:
            out = fn(module, *args, **kwargs)
        finally:
            self._stack.pop()
        event.outputs.extend(self._describe("out", out, event))
        return out

    def _describe(self, name, value, event) -> list[tuple[str, str]]:
        """Flatten a value into (label, description) pairs; tensors get shape and dtype."""
        if isinstance(value, torch.Tensor):
            if self.keep:  # a module called again in one trace gets keys ending #2, #3, ...
                key, n = f"{event.name}.{name}", 2
                while key in self.cache:
                    key, n = f"{event.name}.{name}#{n}", n + 1
                self.cache[key] = value.detach()
            return [(name, describe_tensor(value, self.stats))]
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return [d for i, v in enumerate(value) for d in self._describe(f"{name}[{i}]", v, event)]
        if hasattr(value, "_fields"):  # namedtuple
            return [d for k in value._fields for d in self._describe(f"{name}.{k}", getattr(value, k), event)]
        if isinstance(value, dict):
            return [d for k, v in value.items() for d in self._describe(f"{name}.{k}", v, event)]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [d for f in dataclasses.fields(value)
                    for d in self._describe(f"{name}.{f.name}", getattr(value, f.name), event)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return [(name, repr(value))]
        return [(name, type(value).__name__)]

    # --- reading ------------------------------------------------------------------------------
    @property
    def events(self) -> list[Event]:
        """Every event, depth first, in call order."""
        return [e for r in self.roots for e in r.walk()]

    def text(self) -> str:
        """Indented text: `<` marks an input, `>` an output; nested calls are indented."""
        lines = []

        def emit(e: Event, indent: int):
            pad = "  " * indent
            where = f"{e.path}: " if e.path else ""
            lines.append(f"{pad}{where}{e.module}.{e.fn}")
            lines.extend(f"{pad}  < {n}: {d}" for n, d in e.inputs)
            for c in e.children:
                emit(c, indent + 1)
            lines.extend(f"{pad}  > {n}: {d}" for n, d in e.outputs)

        for r in self.roots:
            emit(r, 0)
        return "\n".join(lines)

    def html(self) -> str:
        """The same tree as nested collapsible <details> elements."""
        def node(e: Event) -> str:
            out = e.outputs[0][1] if len(e.outputs) == 1 else f"{len(e.outputs)} outputs"
            rows = "".join(f"<div>&lt; {html.escape(n)}: {html.escape(d)}</div>" for n, d in e.inputs)
            rows += "".join(node(c) for c in e.children)
            rows += "".join(f"<div>&gt; {html.escape(n)}: {html.escape(d)}</div>" for n, d in e.outputs)
            title = html.escape(f"{e.path + ': ' if e.path else ''}{e.module}.{e.fn} → {out}")
            return (f"<details><summary><code>{title}</code></summary>"
                    f"<div style='margin-left:1.5em;font-family:monospace'>{rows}</div></details>")
        return "".join(node(r) for r in self.roots)

    def show(self):
        """Display the collapsible view in a notebook (falls back to text outside one)."""
        try:
            from IPython.display import HTML, display
        except ImportError:
            print(self.text())
            return
        display(HTML(self.html()))

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<Trace of {len(self.events)} calls: print() it for text, .show() for the collapsible view>"


def describe_tensor(x: torch.Tensor, stats: bool = False) -> str:
    """`(2, 16, 64) float32`, plus `min/max/mean` to 3 significant digits when `stats`."""
    s = f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    if stats and x.numel():
        xf = x.detach().float()
        s += f" min {xf.min().item():.3g} max {xf.max().item():.3g} mean {xf.mean().item():.3g}"
    return s


def _selected(path: str, depth: int | None, only) -> bool:
    """Is the module at `path` (dotted, "" = root) inside the depth limit and the `only` filter?"""
    parts = path.split(".") if path else []
    if depth is not None and len(parts) > depth:
        return False
    if not only:
        return True
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatchcase(p, pat) or fnmatchcase(p.rsplit(".", 1)[-1], pat) for p in prefixes for pat in only)


@contextlib.contextmanager
def trace(model: nn.Module, depth: int | None = None, only=None, stats: bool = False, keep: bool = False):
    """Trace the `@log_io` calls of `model` and its submodules inside the `with` block.

    depth: deepest module path recorded (0 = the model itself, 1 = its children, ...; None = all).
    only:  names or glob patterns; a module is recorded if it, or a module containing it, matches by its
           own name (`"attn"`) or its full path (`"blocks.1.*"`). The root is recorded only when `only`
           is empty.
    stats: add min/max/mean to every tensor (costs a device sync per tensor).
    keep:  keep the tensors in `Trace.cache` under `path.fn.argument` names.
    """
    if isinstance(only, str):
        only = (only,)
    t = Trace(stats=stats, keep=keep)
    chosen = [(name, m) for name, m in model.named_modules()
              if isinstance(m, LoggingModule) and _selected(name, depth, only)]
    if not chosen:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                        if n and isinstance(m, LoggingModule) and not n.rsplit(".", 1)[-1].isdigit()})
        raise ValueError(f"trace(only={only!r}, depth={depth!r}) selects no module; `only` matches module names "
                         f"or paths (not method names), e.g. one of {names}")
    saved = []  # what each module's instance dict held before (an enclosing trace's wrappers), to restore
    for name, m in chosen:
        methods = traced_methods(type(m))
        keys = ["_tracer", *(meth for meth, _, _ in methods)]
        saved.append((m, {k: m.__dict__[k] for k in keys if k in m.__dict__}, keys))
        t._paths[id(m)] = name
        m.__dict__["_tracer"] = t
        for meth, fn, signature in methods:
            m.__dict__[meth] = _recorder(t, m, fn, signature)
    try:
        yield t
    finally:
        for m, before, keys in saved:
            for k in keys:
                if k in before:
                    m.__dict__[k] = before[k]
                else:
                    m.__dict__.pop(k, None)
