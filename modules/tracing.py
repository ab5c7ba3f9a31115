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
names (`t.cache["blocks.0.attn.forward.out"]`), attention patterns included (`...attn.attend.pattern`).
A computation repeated in a loop names its calls with `scope` (`segment.2.blocks.0.attn.forward.out`).
Statistics (min/max/mean) are opt-in: they force a sync. `patch(model, {name: hook})` replaces a named
activation during a forward pass (to ablate, say, RMT's memory) without monkeypatching.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn


class LoggingModule(nn.Module):
    """An `nn.Module` whose `@log_io` methods can be traced."""
    _tracer = None  # the active Trace, set on the instance by `trace` only while it is traced


_ACTIVE: list = []  # the Traces whose `with` block is running


@contextlib.contextmanager
def scope(label: str):
    """Name the calls made inside the block for every active trace (`with scope(f"segment.{s}"):`), so a
    computation repeated in a loop gets stable names (segment 3, layer 2) rather than call counts. Free when
    nothing is traced."""
    if not _ACTIVE:
        yield
        return
    for t in _ACTIVE:
        t.scopes.append(label)
    try:
        yield
    finally:
        for t in _ACTIVE:
            t.scopes.pop()


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
    scope: str = ""               # where in a repeated computation the call happened ("segment.2")
    inputs: list = field(default_factory=list)     # [(name, description)]
    outputs: list = field(default_factory=list)    # [(name, description)]
    children: list = field(default_factory=list)   # nested Events

    @property
    def name(self) -> str:
        """Stable, hierarchical: `[scope.]path.fn`, e.g. `segment.2.blocks.0.attn.attend`."""
        return ".".join(p for p in (self.scope, self.path, self.fn) if p)

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
        self.scopes: list[str] = []

    @property
    def scope(self) -> str:
        return ".".join(self.scopes)

    # --- recording ----------------------------------------------------------------------------
    def record(self, module, fn, signature, args, kwargs):
        bound = signature.bind(module, *args, **kwargs)
        event = Event(self._paths[id(module)], type(module).__name__, fn.__name__, self.scope)
        for name, value in list(bound.arguments.items())[1:]:  # skip self
            if value is None:
                continue  # an argument left at None says nothing about shapes
            event.inputs.extend(self._describe(name, value, event))
        (self._stack[-1].children if self._stack else self.roots).append(event)
        self._stack.append(event)
        try:
            out = _call(module, fn, args, kwargs)
        finally:
            self._stack.pop()
        event.outputs.extend(self._describe("out", out, event))
        return out

    def keep_tensor(self, name: str, value: torch.Tensor) -> None:
        """Record an extra output of the call in progress (an attention pattern that the fused kernel never
        forms); kept in the cache like any other tensor."""
        event = self._stack[-1]
        event.outputs.extend(self._describe(name, value, event))

    def _describe(self, name, value, event) -> list[tuple[str, str]]:
        """Flatten a value into (label, description) pairs; tensors get shape and dtype."""
        if isinstance(value, torch.Tensor):
            if self.keep:  # a call repeated in the same scope (no scope says which) gets #2, #3, ...
                key, n = f"{event.name}.{name}", 2
                while key in self.cache:
                    key, n = f"{event.name}.{name}#{n}", n + 1
                self.cache[key] = value.detach()
            return [(name, describe_tensor(value, self.stats))]
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return [d for i, v in enumerate(value) for d in self._describe(f"{name}[{i}]", v, event)]
        if hasattr(value, "_fields"):  # namedtuple
            return [d for k in value._fields for d in self._describe(f"{name}.{k}", getattr(value, k), event)]
        if isinstance(value, Mapping):
            return [d for k, v in value.items() for d in self._describe(f"{name}.{k}", v, event)]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [d for f in dataclasses.fields(value) if getattr(value, f.name) is not None
                    for d in self._describe(f"{name}.{f.name}", getattr(value, f.name), event)]
        if value is None or isinstance(value, (bool, int, float, str, range)):  # range: consecutive positions
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

        def emit(e: Event, indent: int, outer_scope: str = ""):
            pad = "  " * indent
            where = f"{e.path}: " if e.path else ""
            at = f"[{e.scope}] " if e.scope != outer_scope else ""  # where a scope begins
            lines.append(f"{pad}{at}{where}{e.module}.{e.fn}")
            lines.extend(f"{pad}  < {n}: {d}" for n, d in e.inputs)
            for c in e.children:
                emit(c, indent + 1, e.scope)
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
    _ACTIVE.append(t)
    try:
        yield t
    finally:
        _ACTIVE.remove(t)
        for m, before, keys in saved:
            for k in keys:
                if k in before:
                    m.__dict__[k] = before[k]
                else:
                    m.__dict__.pop(k, None)


def _method_modules(model: nn.Module, name: str):
    """(module, method) pairs that `name` selects: `path.fn` with glob patterns, e.g. `hand_over`,
    `blocks.1.attn.forward`, `blocks.*.mlp.forward`."""
    hits = []
    for path, m in model.named_modules():
        if isinstance(m, LoggingModule):
            for meth, _, _ in traced_methods(type(m)):
                if fnmatchcase(f"{path}.{meth}" if path else meth, name):
                    hits.append((m, meth))
    return hits


@contextlib.contextmanager
def patch(model: nn.Module, hooks: dict):
    """Activation patching: inside the block, the output of each named `@log_io` call is replaced by
    `hook(output)` (the idea of TransformerLens's `run_with_hooks`). Names are `path.fn` with glob patterns:

        with patch(rmt, {"hand_over": torch.zeros_like}):   # the memory handed on is zeroed
            out = rmt(x)

    Composes with `trace` in either order: a traced call records the patched output. Like tracing, it costs
    nothing outside its block. Unknown names are refused."""
    installed = []  # (module, method, the wrapper we put in, if the method was not already wrapped)
    try:
        for name, hook in hooks.items():
            hits = _method_modules(model, name)
            if not hits:
                known = sorted({f"{p}.{meth}" if p else meth for p, m in model.named_modules()
                                if isinstance(m, LoggingModule) for meth, _, _ in traced_methods(type(m))})
                raise ValueError(f"patch: {name!r} names no traced call; e.g. {known[:8]}")
            for m, meth in hits:
                m.__dict__.setdefault("_patches", {})[meth] = hook
                wrapper = None
                if meth not in m.__dict__:  # a trace's recorder, if there is one, applies the patch itself
                    fn = getattr(type(m), meth)
                    wrapper = m.__dict__[meth] = functools.partial(_call_kw, m, fn)
                installed.append((m, meth, wrapper))
        yield model
    finally:
        for m, meth, wrapper in reversed(installed):
            m.__dict__.get("_patches", {}).pop(meth, None)
            if wrapper is not None and m.__dict__.get(meth) is wrapper:
                del m.__dict__[meth]


def _call(module, fn, args, kwargs):
    """Run a `@log_io` method, then the activation patch set on it, if any."""
    out = fn(module, *args, **kwargs)
    hook = module.__dict__.get("_patches", {}).get(fn.__name__)
    return out if hook is None else hook(out)


def _call_kw(module, fn, *args, **kwargs):
    return _call(module, fn, args, kwargs)
