"""Encoder-decoder Transformers (Marian/OPUS-MT, BART, mBART, M2M100, NLLB): `EncoderDecoderModel`
and its per-sequence `EncoderDecoderState`, implementing the `base.DecoderModel` / `DecoderState`
contract for the decoder side.

    state = model.encode(src_ids (B, S), src_lengths (B,))   # encoder once; cross K/V per layer
    logits = model.decode(state, ids (B, T), lengths)         # append tokens, self-attention KV cache
    state.select(rows)                                        # beams / finished rows: memory follows

The encoder runs once per batch; each decoder layer projects its keys and values of the encoder
memory once (`CrossAttention.project`) and the state keeps them, with the source lengths, next to
the self-attention caches. `select` gathers all of it, so rows expanded B -> B * beam carry their
own source. Decoder layers are post-norm (Marian, BART) or pre-norm (mBART, M2M100):

    post: h = n1(h + self(h)); h = n2(h + cross(h, mem)); h = n3(h + ffn(h))
    pre:  h = h + self(n1(h)); h = h + cross(n2(h), mem); h = h + ffn(n3(h)); final norm

and logits = final_norm?(h) @ E_out^T + final_logits_bias (the bias is the output Linear's bias).
What it is not: weight names and config keys (`bart.py`), search (`decoding/`).
"""

from __future__ import annotations

import numpy as np

from ..backends import get_array_module, place_like
from ..convert import GenerationConfig, HFConfig
from ..layers import (
    CrossAttention,
    FeedForward,
    KVCache,
    LayerNorm,
    Linear,
    SelfAttention,
    TokenBatch,
    with_alignments,
)
from .decoder_only import DecoderOnlyState
from .encoder import Embeddings, TransformerEncoder, check_padded


class DecoderLayer:
    """Causal self-attention over the KV cache, cross-attention over the encoder memory, feed-forward."""

    def __init__(
        self,
        self_attention: SelfAttention,
        norm1: LayerNorm,
        cross_attention: CrossAttention,
        norm2: LayerNorm,
        ffn: FeedForward,
        norm3: LayerNorm,
        *,
        pre_norm: bool,
    ):
        if not self_attention.causal:
            raise ValueError("a decoder layer needs causal self-attention")
        self.self_attention, self.cross_attention, self.ffn = self_attention, cross_attention, ffn
        self.norm1, self.norm2, self.norm3 = norm1, norm2, norm3
        self.pre_norm = pre_norm

    def __call__(
        self, h, batch: TokenBatch, cache: KVCache, memory, memory_lengths, n_threads: int, *, group=1, probs=None
    ) -> np.ndarray:
        """h (B*T, C) -> (B*T, C); memory: this layer's projected (keys, values), (B / group, H, S, D)
        each, row b reading memory row b // group; probs: None, or a zeroed (B, H, T,
        max(memory_lengths)) array for the cross-attention weights."""
        if self.pre_norm:
            x = self.norm1(h, n_threads=n_threads)
            h = self.self_attention(x, batch, cache, residual=h, n_threads=n_threads)
            x = self.norm2(h, n_threads=n_threads)
            h = self.cross_attention(
                x, memory, memory_lengths, group=group, residual=h, probs=probs, n_threads=n_threads
            )
            return self.ffn(self.norm3(h, n_threads=n_threads), residual=h, n_threads=n_threads)
        h = self.norm1(self.self_attention(h, batch, cache, residual=h, n_threads=n_threads), n_threads=n_threads)
        h = self.cross_attention(h, memory, memory_lengths, group=group, residual=h, probs=probs, n_threads=n_threads)
        h = self.norm2(h, n_threads=n_threads)
        return self.norm3(self.ffn(h, residual=h, n_threads=n_threads), n_threads=n_threads)


class EncoderDecoderState(DecoderOnlyState):
    """A decoder-only state (self-attention caches, per-row lengths, last hidden vectors) plus the
    encoder memory: per decoder layer its cross-attention keys and values, and the source lengths.

    Rows come in `group` consecutive rows per memory row (row b reads memory row b // group): the
    beams of one source, or its replicated hypotheses, share one copy of its keys and values, which
    cross-attention reads once for all of them; `select` gathers memory only when that grouping breaks."""

    def __init__(
        self, caches, memory: list[tuple[np.ndarray, np.ndarray]], memory_lengths, hidden_size, n_threads, like=None
    ):
        super().__init__(caches, len(memory_lengths), hidden_size, n_threads, like)
        self.memory = memory  # per layer (keys, values), each (B / group, H, S, D)
        self.memory_lengths = np.ascontiguousarray(memory_lengths, dtype=np.int32)  # (B / group,)
        self.group = 1

    def select(self, rows) -> None:
        n_rows = self.batch_size
        super().select(rows)  # checks rows
        sources = np.asarray(rows) // self.group  # memory row of each kept row
        if len(sources) == n_rows and (sources == np.arange(n_rows) // self.group).all():
            return  # rows reordered within their groups (beams of one source): the memory stands
        kept = np.unique(sources)
        group = len(sources) // len(kept) if len(kept) else 1
        if not np.array_equal(sources, np.repeat(kept, group)):
            kept, group = sources, 1  # not in equal consecutive groups: one memory row per row
        if not np.array_equal(kept, np.arange(len(self.memory_lengths))):
            index = place_like(kept, self.last_hidden)
            self.memory = [(k[index], v[index]) for k, v in self.memory]
            self.memory_lengths = self.memory_lengths[kept]
        self.group = group

    def extend(self, other: EncoderDecoderState) -> None:
        """Append the rows of `other` (another batch of sources of the same model) after ours, in
        place, memory padded to the wider source (attention stops at each row's source length)."""
        if self.group != other.group:  # one memory row per row on both sides
            self._ungroup()
            other._ungroup()
        super().extend(other)
        width = max(self.memory[0][0].shape[2], other.memory[0][0].shape[2]) if self.memory else 0
        self.memory = [
            tuple(get_array_module(a).concatenate([_pad_sources(a, width), _pad_sources(b, width)])
                  for a, b in zip(mine, theirs))
            for mine, theirs in zip(self.memory, other.memory, strict=True)
        ]
        self.memory_lengths = np.concatenate([self.memory_lengths, other.memory_lengths])

    def _ungroup(self) -> None:
        """Give every row its own memory row (group 1)."""
        if self.group > 1:
            self.memory = [(k.repeat(self.group, axis=0), v.repeat(self.group, axis=0)) for k, v in self.memory]
            self.memory_lengths = np.repeat(self.memory_lengths, self.group)
            self.group = 1


def _pad_sources(a: np.ndarray, width: int) -> np.ndarray:
    """Keys or values (B, H, S, D) zero-padded to S = width."""
    if a.shape[2] == width:
        return a
    out = get_array_module(a).zeros(a.shape[:2] + (width,) + a.shape[3:], dtype=a.dtype)
    out[:, :, : a.shape[2]] = a
    return out


class EncoderDecoderModel:
    def __init__(
        self,
        *,
        encoder: TransformerEncoder,
        decoder_embeddings: Embeddings,
        decoder_layers: list[DecoderLayer],
        decoder_final_norm: LayerNorm | None,
        lm_head: Linear,
        decoder_start_token_id: int,
        forced_bos_token_id: int | None = None,
        config: HFConfig | None = None,
        generation_config: GenerationConfig | None = None,
    ):
        self.encoder = encoder
        self.decoder_embeddings, self.decoder_layers = decoder_embeddings, decoder_layers
        self.decoder_final_norm, self.lm_head = decoder_final_norm, lm_head
        self.decoder_start_token_id = decoder_start_token_id  # the first decoder input (Marian: pad)
        self.forced_bos_token_id = forced_bos_token_id  # forced first output (a target language code)
        self.config = config
        self.generation_config = generation_config or GenerationConfig()

    @property
    def vocab_size(self) -> int:
        return self.lm_head.out_features

    @property
    def max_source_positions(self) -> int | None:
        return self.encoder.embeddings.max_positions

    @property
    def max_target_positions(self) -> int | None:
        return self.decoder_embeddings.max_positions

    def encoder_output(self, src_ids, src_lengths=None, n_threads: int = 1) -> np.ndarray:
        """The encoder's last hidden states (B, S, C) of right-padded src_ids (B, S), zero past each length."""
        return self.encoder(src_ids, src_lengths, n_threads=n_threads)

    def encode(self, src_ids, src_lengths=None, n_threads: int = 1, *, capacity: int = 0) -> EncoderDecoderState:
        """Run the encoder and start a decoder state of B empty target rows over it; capacity
        preallocates that many self-attention cache slots per row."""
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        _, src_lengths = check_padded(src_ids, src_lengths, "src_ids")
        memory = self.encoder(src_ids, src_lengths, n_threads=n_threads)  # (B, S, C)
        bsz, s, c = memory.shape
        flat = memory.reshape(bsz * s, c)
        projected = [layer.cross_attention.project(flat, bsz, n_threads=n_threads) for layer in self.decoder_layers]
        caches = [layer.self_attention.new_cache(bsz, capacity, memory) for layer in self.decoder_layers]
        return EncoderDecoderState(caches, projected, src_lengths, c, n_threads, memory)

    def decode(self, state: EncoderDecoderState, ids, lengths=None, *, all_logits: bool = False) -> np.ndarray:
        """Append lengths[b] tokens of ids (B, T) to row b; logits (B, V), or (B, T, V) with all_logits.
        A row given 0 tokens is unchanged and gets its previous logits. A refused call changes nothing."""
        return self._forward(state, ids, lengths, all_logits, None)

    def decode_with_attention(self, state: EncoderDecoderState, ids, lengths=None) -> tuple[np.ndarray, np.ndarray]:
        """`decode` (logits (B, V)), also returning the alignments of every appended token: float32
        (B, T, S) attention over the source, the cross-attention of the last layer's first head
        (`layers.with_alignments`; S the state's padded source width)."""
        return with_alignments(
            self.decoder_layers[-1].cross_attention, state.memory[-1][0], state.memory_lengths, state.batch_size,
            ids, lengths, lambda ids, lengths, probs: self._forward(state, ids, lengths, False, probs),
        )

    def _forward(self, state: EncoderDecoderState, ids, lengths, all_logits: bool, probs) -> np.ndarray:
        """decode; probs, if given, receives the last layer's cross-attention (B, H, T, max source length)."""
        ids, counts = check_padded(ids, lengths, "ids")
        bsz, t = ids.shape
        if bsz != state.batch_size or t == 0:
            raise ValueError(f"ids {ids.shape} must have the state's {state.batch_size} rows and T >= 1")
        valid = np.arange(t)[None, :] < counts[:, None]  # (B, T)
        vocab = self.decoder_embeddings.tokens.vocab_size
        if np.any(valid & ((ids < 0) | (ids >= vocab))):
            raise ValueError(f"token ids must lie in [0, {vocab})")
        batch = TokenBatch(state._lengths, counts, t)
        limit = self.max_target_positions
        if limit is not None and bsz and int(batch.key_lengths.max()) > limit:
            raise ValueError(f"a row would reach {int(batch.key_lengths.max())} tokens, past the {limit} positions")
        n_threads = state.n_threads
        state.reserve(batch.span)

        h = self.decoder_embeddings(
            np.where(valid, ids, 0).reshape(-1), batch.positions, n_threads=n_threads
        )  # (B*T, C)
        last_layer = len(self.decoder_layers) - 1
        for i, (layer, cache, memory) in enumerate(zip(self.decoder_layers, state.caches, state.memory)):
            layer_probs = probs if i == last_layer else None
            h = layer(h, batch, cache, memory, state.memory_lengths, n_threads, group=state.group, probs=layer_probs)

        last_slots = place_like(batch.last_slots, h)
        x = h if all_logits else h[last_slots]  # (B*T, C) or (B, C)
        if self.decoder_final_norm is not None:
            x = self.decoder_final_norm(x, n_threads=n_threads)
        last = x[last_slots] if all_logits else x
        state.keep_last(last, counts > 0)
        state._lengths = batch.key_lengths
        if all_logits:
            return self.lm_head(x, n_threads=n_threads).reshape(bsz, t, -1)
        return self.lm_head(state.last_hidden, n_threads=n_threads)
