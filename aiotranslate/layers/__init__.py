"""Layers: weights plus the op calls of one Transformer building block, shared read-only by every
worker thread. Per-call state (KV caches, token geometry) is passed in, never stored.

linear       Linear (the hook for int8 and tensor-parallel replacements)
norms        LayerNorm, RMSNorm
embeddings   Embedding
positions    PositionEmbedding (learned / sinusoidal tables), Rotary (+ rope: scaling variants)
attention    attend, SelfAttention (causal + KV cache, or bidirectional), CrossAttention, with_alignments
ffn          FeedForward, GatedFeedForward (SwiGLU)
kv_cache     TokenBatch (where a call's tokens go), KVCache, RowMoves (how select moves a state's rows)
"""

from .attention import CrossAttention, SelfAttention, attend, with_alignments
from .embeddings import Embedding
from .ffn import FeedForward, GatedFeedForward
from .kv_cache import KVCache, RowMoves, TokenBatch
from .linear import Linear, freeze
from .norms import LayerNorm, RMSNorm
from .positions import PositionEmbedding, Rotary
from .rope import ROPE_TYPES, rope_frequencies

__all__ = [
    "ROPE_TYPES",
    "CrossAttention",
    "Embedding",
    "FeedForward",
    "GatedFeedForward",
    "KVCache",
    "LayerNorm",
    "Linear",
    "PositionEmbedding",
    "RMSNorm",
    "Rotary",
    "RowMoves",
    "SelfAttention",
    "TokenBatch",
    "attend",
    "freeze",
    "rope_frequencies",
    "with_alignments",
]
