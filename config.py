"""Configuration: one dataclass per architecture, plus `TrainConfig` for the training loop.

Every field is annotated and carries its meaning (and, where it is a choice, its valid options) in
`metadata`, which `train.py --help` prints. Derived values are computed in `__post_init__`, which also
rejects invalid values with a message naming the field and what would be valid. A config saved with
`to_dict()` loads back to the same dataclass with `config_from_dict()`; read from a run folder
(`saved=True`), it must hold every field: a missing one is refused, never given today's default.

Adding an architecture: subclass `ModelConfig`, set `arch`, and decorate it with `@register("modules.FILE:Class")`:
that line is the registry entry, mapping the name to its config and its model class. Adding a field to an
existing config: list it in `ADDED_FIELDS` with the value that reproduces the runs saved before it, which lack
it, so they still load as they were trained.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from typing import ClassVar

MODEL_CONFIGS: dict[str, type] = {}   # arch -> config class
MODEL_CLASSES: dict[str, object] = {}  # arch -> model class, or "module:Class" imported on first use


def option(default, help: str, choices=None, min=None):
    """A documented field: `help` is shown by `--help`; `choices`/`min` are checked in __post_init__."""
    return field(default=default, metadata={"help": help, "choices": choices, "min": min})


def register(model):
    """Class decorator, the one registry: `@register("modules.gpt:GPT")` makes a model config selectable by
    its `arch` name and names the model class that it builds (a class, or "module:Class", imported on first
    use so that this file needs no torch). Tests register fake architectures the same way."""
    def deco(cls):
        MODEL_CONFIGS[cls.arch] = cls
        MODEL_CLASSES[cls.arch] = model
        return cls
    return deco


def model_class(arch: str) -> type:
    """The model class registered for `arch`."""
    if arch not in MODEL_CLASSES:
        raise ConfigError(f"arch = {arch!r} is not valid; choose one of {sorted(MODEL_CLASSES)}")
    cls = MODEL_CLASSES[arch]
    if isinstance(cls, str):
        import importlib
        module, name = cls.split(":")
        cls = MODEL_CLASSES[arch] = getattr(importlib.import_module(module), name)
    return cls


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""


@dataclass
class Config:
    """Base of every config: generic validation and dict round trip."""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _field_type(f)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if expected in (int, float, bool, str) and (not isinstance(value, expected)
                                                        or (expected is int and isinstance(value, bool))):
                raise ConfigError(f"{f.name} = {value!r} must be of type {expected.__name__}")
            if expected is float and not math.isfinite(value):
                raise ConfigError(f"{f.name} = {value!r} must be a finite number")
            choices, low = f.metadata.get("choices"), f.metadata.get("min")
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name} = {value!r} is not valid; choose one of {list(choices)}")
            if low is not None and value < low:
                raise ConfigError(f"{f.name} = {value!r} must be >= {low}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, saved: bool = False):
        """The config of fields `d`; a field left out takes its default, unless `saved`: `d` was written by
        `to_dict()` (a run folder's config), so it must hold every field but those added since it was written
        (ADDED_FIELDS, which take the value the runs saved before had). Today's default may not be the value
        a run was trained with: a missing field is refused, naming it and its valid values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; valid fields: {sorted(known)}")
        if saved:
            added = ADDED_FIELDS.get(cls, {})
            missing = [f for f in fields(cls) if f.name not in d and f.name not in added]
            if missing:
                raise ConfigError(f"the field(s) {[f.name for f in missing]} are missing; a saved config is never "
                                  f"completed with today's defaults, which may not be the values the run was "
                                  f"trained with. Write in the run's values ({'; '.join(map(_valid, missing))})")
            d = {**{k: v for k, v in added.items() if k not in d}, **d}
        return cls(**d)

    @classmethod
    def help(cls) -> dict[str, str]:
        """field name -> its documented meaning."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def _field_type(f) -> type | None:
    """The runtime type of a field annotated as a string (`from __future__ import annotations`)."""
    return {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type))


def _valid(f) -> str:
    """What field `f` may hold, for a message: `norm: one of ['rms', 'layer', 'cosine']`, `d_model: an int >= 1`."""
    choices, low = f.metadata.get("choices"), f.metadata.get("min")
    if choices is not None:
        return f"{f.name}: one of {list(choices)}"
    return f"{f.name}: a{'n' if str(f.type) == 'int' else ''} {f.type}" + (f" >= {low}" if low is not None else "")


POSITIONS = ("learned", "sinusoidal", "rope", "relative")
POSITIONS_HELP = ("learned, sinusoidal (added to the embedding), rope (rotary, in attention), relative (learned "
                  "per-head bias on the distance)")
POOLINGS = ("mean", "first", "last")


@dataclass
class ModelConfig(Config):
    """Fields every architecture shares."""
    arch: str = option("gpt", "architecture; one of the registered configs (see config.MODEL_CONFIGS)")
    vocab_size: int = option(0, "vocabulary size; 0 = take it from the tokenizer", min=0)
    tokenizer: str = option("char", "tokenizer: 'char' (built from the corpus) or 'bpe-N' (the shipped byte-level "
                                 "BPE cut to N tokens, any N from 260 to 4096; trained at 512, 1024, 2048, 4096)")
    block_size: int = option(128, "tokens per training sequence (and the context window of the model)", min=1)
    n_layer: int = option(4, "number of Transformer layers", min=1)
    n_head: int = option(4, "attention heads per layer", min=1)
    n_kv_head: int = option(0, "key/value heads for grouped-query attention; 0 = n_head (plain multi-head)",
                         min=0)
    d_model: int = option(128, "model width C; must be divisible by n_head", min=1)
    dropout: float = option(0.0, "dropout probability on attention weights and residual branches", min=0.0)
    norm: str = option("rms", "normalisation: rms (RMSNorm), layer (LayerNorm), cosine (CosineNorm)",
                    choices=("rms", "layer", "cosine"))
    pos: str = option("rope", "positions: " + POSITIONS_HELP, choices=POSITIONS)
    mlp: str = option("gelu", "feed-forward: gelu (4C hidden) or swiglu (gated SiLU, hidden 2/3 of 4C)",
                   choices=("gelu", "swiglu"))
    bias: bool = option(False, "biases in linear layers and LayerNorm")
    tie_weights: bool = option(True, "share the token embedding with the output head")
    n_classes: int = option(0, "0 = a language-model head (next-token logits); N >= 2 = a classification head "
                               "over N classes (set by train.py for --task classify)", min=0)
    pooling: str = option("last", "how the classification head pools the hidden states: mean (over non-padding "
                                  "positions), first or last (non-padding) token; a causal decoder's last token "
                                  "is the only one that has read the whole input", choices=POOLINGS)

    display_name: ClassVar[str] = "GPT"  # what tables and figures call the architecture (not a field)

    @classmethod
    def equal_budget(cls, n_layer: int, d_model: int, block_size: int) -> dict:
        """The fields, beyond the shared ones, that make this architecture the peer of a GPT of `n_layer` layers
        of width `d_model` at context `block_size`: about the same parameters, the same depth's worth of
        layers. What experiments/reference.py trains for every registered architecture; {} where the shared
        fields are enough."""
        return {}

    def __post_init__(self):
        super().__post_init__()
        if MODEL_CONFIGS.get(self.arch) is not type(self):
            raise ConfigError(f"arch = {self.arch!r} does not match {type(self).__name__}; valid archs: "
                              f"{sorted(MODEL_CONFIGS)} (use config_from_dict to pick the class)")
        if self.n_kv_head == 0:
            self.n_kv_head = self.n_head
        if self.d_model % self.n_head:
            raise ConfigError(f"d_model = {self.d_model} must be divisible by n_head = {self.n_head}")
        if (self.d_model // self.n_head) % 2 and self.pos == "rope":
            raise ConfigError(f"pos = 'rope' needs an even head width, but d_model / n_head = "
                              f"{self.d_model // self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"n_head = {self.n_head} must be a multiple of n_kv_head = {self.n_kv_head}")
        if self.dropout >= 1:
            raise ConfigError(f"dropout = {self.dropout} must be in [0, 1)")
        if self.n_classes == 1:
            raise ConfigError("n_classes = 1 is not a classification; use 0 (language model) or >= 2 classes")
        if not (self.tokenizer == "char" or _is_bpe_name(self.tokenizer) or self.tokenizer.startswith("task-")):
            raise ConfigError(f"tokenizer = {self.tokenizer!r} is not valid; use 'char' or 'bpe-N' with N from 260 "
                              f"to 4096 (e.g. 'bpe-1024'); 'task-NAME' is set by train.py for tasks")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


def _is_bpe_name(name: str) -> bool:
    return name.startswith("bpe-") and name[4:].isdigit()


@register("modules.gpt:GPT")
@dataclass
class GPTConfig(ModelConfig):
    """The decoder-only baseline: pre-norm blocks, final norm, (tied) LM head."""
    arch: str = option("gpt", "architecture (this config: gpt; see the list below)")


@dataclass
class SegmentConfig(ModelConfig):
    """Shared by the segment-recurrent models: a long sequence is processed `seg_len` tokens at a time.

    `block_size` is the length of a training sequence; the models themselves take any length (their
    `max_context` is None) and carry a state whose size does not grow with it."""
    seg_len: int = option(32, "tokens per segment; a sequence of block_size tokens is cut into segments of this "
                           "length (the last one may be shorter)", min=1)

    def __post_init__(self):
        super().__post_init__()
        if self.seg_len > self.block_size:
            raise ConfigError(f"seg_len = {self.seg_len} exceeds block_size = {self.block_size}: a training "
                              f"sequence would be one segment and the memory never used; use seg_len <= "
                              f"{self.block_size}")


@register("modules.transformer_xl:TransformerXL")
@dataclass
class TransformerXLConfig(SegmentConfig):
    """Transformer-XL (Dai et al. 2019): each layer also attends to the previous segments' hidden states at
    its input, kept as a stop-gradient memory of `mem_len` vectors per layer (never backpropagated into).

    Positions are counted over [memory; segment]: rope or relative see the true distances to the memory;
    learned or sinusoidal are added to the token embedding and suffer the 'temporal confusion' of Dai et al.
    section 3.3 (the same absolute positions recur in every segment)."""
    arch: str = option("transformer_xl", "architecture (this config: transformer_xl)")
    mem_len: int = option(32, "hidden states kept per layer as memory (stop-gradient); 0 = no memory (the "
                           "segmented Transformer)", min=0)

    display_name: ClassVar[str] = "Transformer-XL"

    @classmethod
    def equal_budget(cls, n_layer: int, d_model: int, block_size: int) -> dict:
        """Four segments per context, each with a memory of one segment's hidden states per layer (no weights)."""
        return {"seg_len": block_size // 4, "mem_len": block_size // 4}


@register("modules.rmt:RMT")
@dataclass
class RMTConfig(SegmentConfig):
    """Recurrent Memory Transformer (Bulatov et al. 2022): memory tokens read and written per segment.

    Positions are counted within each [memory; segment; memory] input. rope is the default: the relative
    bias starts at zero, without any positional signal, and RMT's write-then-read path then trains much
    more slowly."""
    arch: str = option("rmt", "architecture (this config: rmt)")
    n_mem: int = option(4, "memory vectors carried between segments; 0 = the segmented Transformer without "
                        "memory (the paper's baseline)", min=0)
    bptt_depth: int = option(-1, "-1 = backpropagate through every segment (full BPTT); k >= 0 = through at most "
                              "k memory hand-overs (the memory entering segments k+1, 2(k+1), ... is "
                              "detached; 0: detached at every segment)", min=-1)
    mem_at: str = option("both", "both = read memory before and write memory after the segment; start = one "
                              "memory block before it only (ablation: a decoder cannot write it)",
                      choices=("both", "start"))

    display_name: ClassVar[str] = "RMT"

    @classmethod
    def equal_budget(cls, n_layer: int, d_model: int, block_size: int) -> dict:
        """Four segments per context; one memory token per 16 channels, at least 2 (the memory's embedding
        adds n_mem x d_model parameters: 0.1% at width 64)."""
        return {"seg_len": block_size // 4, "n_mem": max(2, d_model // 16)}

    def __post_init__(self):
        super().__post_init__()
        if self.mem_at == "start" and self.n_mem == 0:
            raise ConfigError("mem_at = 'start' needs memory to place: n_mem = 0 has none; set n_mem >= 1 or "
                              "leave mem_at = 'both'")


@register("modules.transformer:Transformer")
@dataclass
class TransformerConfig(ModelConfig):
    """The encoder-decoder Transformer the HMU framework compares with (Vaswani et al. 2017): an encoder over
    the source, a decoder with causal self-attention and cross-attention, one embedding shared by source,
    target and the (tied) head. The default size is a laptop's, near the default GPT's: 2 + 2 layers, D = 128,
    4 heads (0.93M parameters on a task's vocabulary, 1.0M with the HMU); the framework's own, 4 + 4 layers,
    D = 256, 8 heads, is the preset `--preset hmu-framework`. The rest follows the framework: ReLU
    feed-forward 4D, sinusoidal positions, LayerNorm with biases (the blocks are pre-norm, unlike
    the original's post-norm `nn.Transformer`)."""
    arch: str = option("transformer", "architecture (this config: transformer)")
    display_name: ClassVar[str] = "Transformer (encoder-decoder)"
    n_layer: int = option(2, "layers of the encoder and of the decoder each (unless n_enc_layer / n_dec_layer "
                             "say otherwise)", min=1)
    n_enc_layer: int = option(0, "encoder layers; 0 = n_layer", min=0)
    n_dec_layer: int = option(0, "decoder layers; 0 = n_layer", min=0)
    pos: str = option("sinusoidal", "positions: " + POSITIONS_HELP, choices=POSITIONS)
    mlp: str = option("relu", "feed-forward: relu (the HMU framework's), gelu (4C hidden) or swiglu",
                      choices=("relu", "gelu", "swiglu"))
    norm: str = option("layer", "normalisation: rms (RMSNorm), layer (LayerNorm), cosine (CosineNorm)",
                       choices=("rms", "layer", "cosine"))
    bias: bool = option(True, "biases in linear layers and LayerNorm")
    pooling: str = option("mean", "how the classification head pools the encoder's states: mean (over "
                                  "non-padding positions), first or last (non-padding) token", choices=POOLINGS)

    def __post_init__(self):
        super().__post_init__()
        self.n_enc_layer = self.n_enc_layer or self.n_layer
        self.n_dec_layer = self.n_dec_layer or self.n_layer


@register("modules.hmu:HMUTransformer")
@dataclass
class HMUConfig(TransformerConfig):
    """The same encoder-decoder with a Hyper-Memory Unit (HMU framework README): a VAE bottleneck whose
    reconstruction is fused (gated or not) with the representation it read, after the encoder (`hmu_at
    encoder`) or on the decoder's output before the head (`hmu_at decoder`). Unlike the original, the VAE
    has a KL term (`kl_weight`; 0 reproduces the original) and evaluation uses the posterior mean."""
    arch: str = option("hmu", "architecture (this config: hmu)")
    display_name: ClassVar[str] = "HMU Transformer"
    latent_dim: int = option(0, "VAE latent width d_z; 0 = d_model // 2", min=0)
    hmu_gate: bool = option(True, "true = gated fusion (the variant the reported results used); false = the "
                                  "ungated MLP fusion")
    hmu_at: str = option("encoder", "where the HMU sits: encoder (on the encoder's output, so every "
                                    "cross-attention reads it) or decoder (on the decoder's output, before "
                                    "the head)", choices=("encoder", "decoder"))
    kl_weight: float = option(0.01, "weight of the KL term (nats per position, summed over the latent); "
                                    "0 = the original, which had none", min=0.0)
    kl_free_bits: float = option(0.0, "free bits: nats per latent dimension (batch-averaged KL) that cost "
                                      "nothing, so the latent is not pushed onto the prior; 0 = a plain KL",
                                 min=0.0)
    recon_weight: float = option(0.1, "weight of the VAE's reconstruction term, -log p(v | z) in nats per "
                                      "position (a unit-variance Gaussian); equal to kl_weight = the VAE's own "
                                      "objective (the ELBO), 10 x kl_weight = a beta-VAE with beta 0.1; 0 = "
                                      "none, as in the original", min=0.0)
    vae_apart: bool = option(True, "the VAE's loss trains the VAE alone: its KL and reconstruction are taken "
                                    "from a pass over the representation with its gradient stopped, so they never "
                                    "shape the encoder (or decoder) the VAE reads")
    kl_anneal: float = option(0.0, "KL annealing: the KL weight grows linearly from 0 over this fraction of "
                                   "training; 0 = full weight from the start", min=0.0)

    def __post_init__(self):
        super().__post_init__()
        self.latent_dim = self.latent_dim or self.d_model // 2
        if self.n_classes and self.hmu_at == "decoder":
            raise ConfigError("hmu_at = 'decoder' does not apply to classification: a classifier reads the "
                              "encoder's states only (there is no decoder output); use hmu_at = 'encoder'")


HIERARCHY_EXAMPLE = "'1@1 2@2 1@1' or '1@1 1@2 2@6 1@2 1@1'"


def parse_hierarchy(text: str) -> list[tuple[int, int]]:
    """The paper's hierarchy string -> [(layers, cumulative factor)], outside in and back out.

    `"2@1 4@3 2@1"`: 2 layers at full length, 4 layers at 1/3 of it, 2 layers at full length again.
    Levels nest: the factors read as a palindrome, start at 1, grow strictly towards the middle, and each
    is a multiple of the one outside it (the relative factor between neighbours must be a whole number).
    Layer counts may differ between the two sides of a level (`"1@1 4@4 3@1"`) and may be 0 there; the
    middle level needs at least one layer. Raises ConfigError saying what is wrong and showing a valid one."""
    def bad(why):
        return ConfigError(f"hierarchy = {text!r}: {why}; write it as N@F levels, e.g. {HIERARCHY_EXAMPLE}")

    parts = text.split()
    if not parts:
        raise bad("it is empty")
    levels = []
    for part in parts:
        m = re.fullmatch(r"(\d+)@(\d+)", part)
        if not m:
            raise bad(f"{part!r} is not N@F (N layers at shortening factor F, both whole numbers)")
        levels.append((int(m.group(1)), int(m.group(2))))
    if len(levels) % 2 == 0:
        raise bad(f"it has {len(levels)} levels; a hierarchy goes down and back up, so it has an odd number")
    factors = [f for _, f in levels]
    if factors != factors[::-1]:
        raise bad(f"the factors {factors} are not a palindrome (each level is left on the way back up)")
    if factors[0] != 1:
        raise bad(f"the outermost factor is {factors[0]}; the first and last levels run at full length (@1)")
    middle = len(levels) // 2
    for (_, outer), (_, inner) in zip(levels[:middle], levels[1:middle + 1]):
        if inner <= outer:
            raise bad(f"factor {inner} follows {outer}; factors are cumulative and must grow towards the middle")
        if inner % outer:
            raise bad(f"factor {inner} is not a multiple of {outer}: the relative factor {inner}/{outer} must be a "
                      f"whole number")
    if levels[middle][0] < 1:
        raise bad(f"the middle level {parts[middle]!r} has no layers; give it at least 1")
    return levels


def hierarchy_depth(text: str) -> int:
    """Residual layers of a hierarchy: every level's layers, on both sides."""
    return sum(n for n, _ in parse_hierarchy(text))


@register("modules.hourglass:Hourglass")
@dataclass
class HourglassConfig(ModelConfig):
    """Hourglass (Nawrot et al. 2021, arXiv 2110.13711): layers at full length, then at 1/k of it, and back.

    `n_layer` is derived from `hierarchy` (the sum of its layer counts); leave it 0, or give that sum."""
    arch: str = option("hourglass", "architecture (this config: hourglass)")
    n_layer: int = option(0, "derived from hierarchy (the sum of its layer counts); 0 = derive it", min=0)
    hierarchy: str = option("1@1 2@4 1@1", "levels as N@F (N layers at cumulative shortening factor F), a "
                            "palindrome of factors that grow towards the middle, e.g. '2@1 4@3 2@1' or "
                            "'1@1 1@2 2@6 1@2 1@1'")
    shorten: str = option("avg", "shortening of each group of k vectors: avg (mean), linear (concatenate, "
                          "Linear(k C -> C)), attention (the mean attends to the group, plus the mean)",
                          choices=("avg", "linear", "attention"))
    upsample: str = option("repeat", "upsampling of each short vector to k: repeat, linear (Linear(C -> k C)), "
                           "attention (repeated vectors attend causally to the short sequence, plus themselves)",
                           choices=("repeat", "linear", "attention"))

    display_name: ClassVar[str] = "Hourglass"

    @classmethod
    def equal_budget(cls, n_layer: int, d_model: int, block_size: int) -> dict:
        """The same n_layer layers, a quarter of them (rounded up) at full length before the shortening, half at
        half length, the rest at full length after it: avg shortening and repeat upsampling add no weights, so
        the parameters are the GPT's and the compute less (the equal-compute claim is experiments/reproduce.py's).
        4 layers: '1@1 2@2 1@1'."""
        pre, mid = -(-n_layer // 4), n_layer // 2
        return {"hierarchy": f"{pre}@1 {mid}@2 {n_layer - pre - mid}@1", "n_layer": 0}

    def __post_init__(self):
        depth = hierarchy_depth(self.hierarchy)
        if self.n_layer == 0:
            self.n_layer = depth
        elif self.n_layer != depth:
            raise ConfigError(f"n_layer = {self.n_layer} does not match hierarchy = {self.hierarchy!r}, whose layers "
                              f"sum to {depth}; leave n_layer 0 (derived) or set it to {depth}")
        super().__post_init__()


@register("modules.memory_mosaics:MemoryMosaics")
@dataclass
class MemoryMosaicsConfig(ModelConfig):
    """Memory Mosaics (Zhang et al. 2024): contextual associative memories (leaky keys, look-ahead values,
    Gaussian-kernel retrieval) and a persistent memory in place of attention and the MLP; no positions."""
    arch: str = option("memory_mosaics", "architecture (this config: memory_mosaics)")
    pos: str = option("none", "none: Memory Mosaics add no positional embedding (the leaky keys carry order)",
                      choices=("none",))
    pmem_size: int = option(0, "key/value pairs per head of the persistent memory; 0 = round(3.5 d_model), "
                               "which matches a GPT block's 12 d_model^2 weights", min=0)
    persistent: str = option("pmem", "pmem = the persistent associative memory; mlp = the GPT's MLP instead "
                                     "(widened to 4.5 d_model hidden for parameter parity)",
                             choices=("pmem", "mlp"))
    leaky_form: str = option("chunked", "how the leaky key average is computed: matrix = a (T, T) decay matrix "
                                        "(clear, memory O(T^2)); chunked = sqrt(T)-sized chunks, memory O(T); "
                                        "equal up to rounding", choices=("matrix", "chunked"))

    display_name: ClassVar[str] = "Memory Mosaics"  # its defaults match a GPT block's parameters (pmem_size)

    def __post_init__(self):
        super().__post_init__()
        if self.n_kv_head != self.n_head:
            raise ConfigError(f"n_kv_head = {self.n_kv_head}: Memory Mosaics have no grouped value heads; "
                              f"leave it at 0 (= n_head)")
        if self.pmem_size == 0:
            self.pmem_size = round(3.5 * self.d_model)


@register("modules.hilt:HILT")
@dataclass
class HILTConfig(ModelConfig):
    """HILT: a GPT whose consecutive layer outputs are read, per token, by small inter-layer transformers
    (ILTs) that add a scaled modulation to the stream before the next layer (mnemo's reading of the HILT
    README; see modules/hilt.py)."""
    arch: str = option("hilt", "architecture (this config: hilt)")
    ilt_dim: int = option(128, "width of each inter-layer transformer", min=1)
    ilt_heads: int = option(2, "attention heads of each inter-layer transformer; must divide ilt_dim", min=1)
    ilt_layers: int = option(2, "layers of each inter-layer transformer", min=1)
    ilt_dropout: float = option(0.1, "dropout inside the inter-layer transformers", min=0.0)
    mod_start: float = option(0.01, "modulation scale at the start of training", min=0.0)
    mod_end: float = option(0.1, "modulation scale at the end of training, and in evaluation and generation",
                            min=0.0)

    display_name: ClassVar[str] = "HILT"

    @classmethod
    def equal_budget(cls, n_layer: int, d_model: int, block_size: int) -> dict:
        """Small inter-layer transformers, one layer each, a quarter of the width (at least 8) with heads of 8
        channels: +7.6% parameters at width 64, the smallest ILT that still has two heads there."""
        ilt_dim = max(8, d_model // 4)
        return {"ilt_dim": ilt_dim, "ilt_heads": ilt_dim // 8, "ilt_layers": 1}

    def __post_init__(self):
        super().__post_init__()
        if self.ilt_dim % self.ilt_heads:
            raise ConfigError(f"ilt_dim = {self.ilt_dim} must be divisible by ilt_heads = {self.ilt_heads} "
                              f"(e.g. ilt_dim 128, ilt_heads 2)")
        if self.ilt_dropout >= 1:
            raise ConfigError(f"ilt_dropout = {self.ilt_dropout} must be in [0, 1), e.g. 0.1")


SCHEDULES = ("cosine", "linear", "step", "constant")


@dataclass
class TrainConfig(Config):
    """The training loop, the data it reads, and the task (if any)."""
    data: str = option("builtin", "corpus: builtin (Python's pydoc topics, ships with Python), builtin-records "
                               "(docstring summaries of Python's built-ins, one record each), shakespeare (ships, "
                               "checksummed), tinystories (downloaded and cached), or a path to a UTF-8 text file; "
                               "with "
                               "--task classify, a TSV/CSV file with a header (builtin: the synthetic majority "
                               "sentences)")
    records: bool = option(False, "read --data as records separated by blank lines, each trained as <bos> "
                                  "record <eos> (packed back to back, every window starting at a <bos>), so "
                                  "the model learns to stop; builtin-records is a records set that ships")
    init_from: str = option("", "finetune: start from this run folder (a path, or a name under trained/) with "
                                "its weights, tokenizer and model config (model flags are refused); the run "
                                "records the source and the sha256 of its model.pt. Empty = a fresh model")
    task: str = option("", "task instead of a corpus (e.g. copy, hmu_temporal, classify); empty = language "
                           "modelling on --data")
    task_len: int = option(0, "symbols per task example; 0 = the task's default: 8, or for classify from a "
                              "--data file the longest example's tokens, up to block_size (the examples cut "
                              "are counted)", min=0)
    n_keys: int = option(4, "key/value pairs per example (retrieval task)", min=1)
    task_vocab: int = option(10, "distinct symbols a task draws from", min=2)
    curriculum: int = option(0, "task runs of a segmented model (seg_len): train this many steps at each "
                                "shorter number of segments, 1 first, before the full task (the RMT paper's "
                                "curriculum); 0 = the full task from the start", min=0)
    heldout: bool = option(True, "tasks: one example in ten, chosen by a hash of the example, is held out for "
                                 "validation and evaluation and never drawn for training; false only for the "
                                 "task runs saved before 2026-12-07, whose sampler could draw any example (a "
                                 "corpus's validation split is always held out)")
    stream: bool = option(False, "language modelling as Transformer-XL trains: each batch row reads its own "
                                 "contiguous part of the training text, window after window, and a model with "
                                 "a memory (transformer_xl, rmt) carries it, detached, from one step to the "
                                 "next; false = random windows, each read with a fresh state")
    text_column: str = option("sentence", "classify: the column of the text in the --data TSV/CSV file")
    text_pair_column: str = option("", "classify: the column of the second text of a sentence pair (GLUE's "
                                       "sentence2, question2, ...); empty = single sentences")
    label_column: str = option("label", "classify: the column of the label in the --data TSV/CSV file")
    batch_size: int = option(32, "sequences per optimizer micro-step", min=1)
    max_iters: int = option(200, "optimizer steps in the whole run (the default takes a few minutes on one CPU "
                                  "core; the shipped reference run took 500)", min=0)
    lr: float = option(3e-3, "peak learning rate (after warm-up)", min=0.0)
    min_lr: float = option(3e-4, "learning rate at the end of the schedule", min=0.0)
    warmup_iters: int = option(30, "linear warm-up steps from 0 to lr", min=0)
    schedule: str = option("cosine", "decay after warm-up to min_lr: cosine, linear, step (lr x0.1 after "
                                  "2/3 of the decay), constant", choices=SCHEDULES)
    weight_decay: float = option(0.1, "AdamW weight decay for matrices (never for norms, biases, embeddings' "
                                   "scalars)", min=0.0)
    beta1: float = option(0.9, "AdamW beta1", min=0.0)
    beta2: float = option(0.99, "AdamW beta2", min=0.0)
    grad_accum: int = option(1, "micro-batches accumulated per optimizer step", min=1)
    grad_clip: float = option(1.0, "clip the global gradient norm to this; 0 = no clipping", min=0.0)
    eval_interval: int = option(50, "steps between evaluations, log rows and checkpoints", min=1)
    eval_iters: int = option(10, "fixed validation batches per evaluation", min=1)
    seed: int = option(1337, "seed for model init, data sampling and dropout", min=0)
    threads: int = option(1, "torch CPU threads (1 keeps timings and losses reproducible)", min=1)
    sample_len: int = option(200, "characters/tokens of the sample printed and stored at the end", min=0)
    device: str = option("auto", "where to train: auto (cuda if there is one, else mps, else cpu), cpu, cuda, "
                                 "cuda:N or mps; under torchrun each process takes its own GPU")
    dtype: str = option("float32", "precision of the forward pass: float32, or bfloat16 / float16 under "
                                   "autocast (weights, optimizer state and losses stay float32; float16 adds a "
                                   "gradient scaler); bfloat16 works on CPUs too", choices=("float32", "bfloat16",
                                                                                          "float16"))
    compile: bool = option(False, "train through torch.compile(model) (saved weights are the plain model's); "
                                  "pays off on a GPU, rarely on a CPU")

    def __post_init__(self):
        super().__post_init__()
        if not self.task_len and not (self.task == "classify" and self.data not in ("", "builtin")):
            self.task_len = 8  # the default of every task but classify from a file, which measures its examples
        if not self.task:
            self.heldout = True  # a corpus's validation split is held out whatever the field says
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr = {self.min_lr} must not exceed lr = {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"beta1 = {self.beta1}, beta2 = {self.beta2} must be in [0, 1)")
        for name in ("records", "init_from", "stream"):
            if getattr(self, name) and self.task:
                raise ConfigError(f"{name} = {getattr(self, name)!r} applies to language modelling on --data, but "
                                  f"task = {self.task!r} is set (a task brings its own examples and tokenizer); "
                                  f"leave out one of them")


# Fields added to a config class after run folders had been saved without them: class -> {field: the value
# every run saved before had, which reproduces it}. A saved config (`from_dict(..., saved=True)`) may lack these
# and only these; any other missing field is refused, never filled with today's default (gpt2style-builtin's
# model_config.json without its `norm` and `pos` would load as another model). Classes that came later always
# saved these fields; so did TrainConfig's for every field not listed.
_BEFORE_HEADS = {"n_classes": 0, "pooling": "last"}  # 2026-12-04: every model was a language model (pooling unused)
ADDED_FIELDS: dict[type, dict] = {
    GPTConfig: _BEFORE_HEADS, TransformerXLConfig: _BEFORE_HEADS, RMTConfig: _BEFORE_HEADS,
    HMUConfig: {"kl_free_bits": 0.0, "recon_weight": 0.0, "vae_apart": False,  # 2026-12-07: a plain KL from
                "kl_anneal": 0.0},                                            # the start
    TrainConfig: {
        "device": "cpu", "dtype": "float32", "compile": False,  # 2026-12-04: runs trained on the CPU in float32
        "text_column": "sentence", "text_pair_column": "", "label_column": "label",  # 2026-12-04: --task classify
        "curriculum": 0,                                         # 2026-12-05: the full task from the start
        "records": False, "init_from": "",                       # 2026-12-05: a corpus, from a fresh model
        "heldout": False, "stream": False,                       # 2026-12-07: any task example; random windows
    },
}


@dataclass(frozen=True)
class Preset:
    """A named model size (`python train.py --arch hmu --preset hmu-framework`): its fields, for its archs."""
    archs: frozenset
    fields: dict
    doc: str


PRESETS = {"hmu-framework": Preset(frozenset({"transformer", "hmu"}), {"n_layer": 4, "d_model": 256, "n_head": 8},
                                   "the HMU framework's size, 4 + 4 layers of width 256 with 8 heads (7.4M "
                                   "parameters, 7.7M with the HMU, on a task's vocabulary of 14)")}


def preset_fields(name: str, arch: str) -> dict:
    """The fields of preset `name` for `arch` ({} for no preset); a ConfigError names the valid ones."""
    if not name:
        return {}
    if name not in PRESETS:
        raise ConfigError(f"preset = {name!r} is not valid; choose one of {sorted(PRESETS)}")
    if arch not in PRESETS[name].archs:
        raise ConfigError(f"preset = {name!r} is a size of {sorted(PRESETS[name].archs)}, not of arch = {arch!r}")
    return dict(PRESETS[name].fields)


def parse_bool(s: str) -> bool:
    """A boolean flag's value: `true` or `false` (any case), as the configs' JSON writes them."""
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    raise argparse.ArgumentTypeError(f"{s!r} is not a boolean; write true or false")


def add_flags(group, cls) -> None:
    """The command line of a config class: one flag per field (an argparse group's), of the same name, with
    its default and documented meaning (what `python train.py --help` lists)."""
    for f in fields(cls):
        kind = {"int": int, "float": float, "bool": parse_bool, "str": str}[str(f.type)]
        default = str(f.default).lower() if isinstance(f.default, bool) else repr(f.default)
        group.add_argument(f"--{f.name}", type=kind, metavar=str(f.type).upper(),
                           help=f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%"))


def config_from_dict(d: dict, saved: bool = False) -> Config:
    """Rebuild a config from `to_dict()` output: a model config if it has `arch`, else a TrainConfig.
    `saved`: `d` was read from a run folder, and must hold every field (see Config.from_dict)."""
    if "arch" not in d:
        return TrainConfig.from_dict(d, saved)
    if d["arch"] not in MODEL_CONFIGS:
        raise ConfigError(f"arch = {d['arch']!r} is not valid; choose one of {sorted(MODEL_CONFIGS)}")
    return MODEL_CONFIGS[d["arch"]].from_dict(d, saved)


def model_config(arch: str = "gpt", **fields) -> ModelConfig:
    """Shorthand: `model_config("gpt", n_layer=2)`."""
    return config_from_dict({"arch": arch, **fields})
