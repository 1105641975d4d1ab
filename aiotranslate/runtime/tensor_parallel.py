"""Tensor parallelism: `shard_model`, a pass that cuts a loaded model into one rank's shard (as
gpt-fast's `tp.py`), and the layers it puts in. The layers and models themselves know nothing of it.

Megatron's split, one all-reduce after each attention and feed-forward block:
- column-parallel, a plain `Linear` over this rank's rows: the fused QKV projection (query heads with
  their key/value heads: rank r holds KV heads [r*Hkv/N, (r+1)*Hkv/N) and the query heads that share
  them), cross-attention's Q and KV, the feed-forward up (or gate+up) projection. Attention reads its
  head count from the QKV size and the feed-forward its width from the linears, so they run as they are.
- row-parallel (`RowParallelLinear`): attention output and feed-forward down, this rank's columns; the
  partial products are summed by an Allreduce, then bias and residual are added once.
- vocabulary-parallel: the token table (`VocabParallelEmbedding`: rows of this rank, zeros for ids of
  other ranks, Allreduce) and the output projection (`VocabParallelHead`: logits of this rank's
  vocabulary slice, gathered on rank 0, the only rank that reads logits). A tied table is one shard.
Norms, positions, token types and BERT's pooler are small and stay whole on every rank.

Memory: a shard of a weight that is a view of the checkpoint file (np.memmap) is a view too, so a
rank reads only the pages of its slice. Weights the loader built as copies (fused QKV and gate+up,
GPT-2's transposed Conv1D) are sliced into a copy of this rank's part, and the whole copy is freed when
the model drops it: it exists on every rank while the model loads (see docs/tensor_parallel.md).

Collectives run on the communicator bound to the calling thread (`bind`): every worker thread has its
own, since the workers of a rank share these layers. Each `Collectives` also counts the time spent in
its calls (waiting for the slowest rank included).
"""

from __future__ import annotations

import mmap
import threading
import time

import numpy as np

from .. import ops
from ..layers import CrossAttention, Embedding, FeedForward, GatedFeedForward, Linear, SelfAttention
from ..models.bert import EncoderModel
from ..models.decoder_only import DecoderOnlyModel
from ..models.encoder import TransformerEncoder
from ..models.seq2seq import EncoderDecoderModel
from .mpi import load_mpi


class Collectives:
    """The tensor collectives of one worker over its communicator (buffer methods: no pickling, the
    GIL released while MPI waits), with the seconds and number of calls spent in them."""

    def __init__(self, comm) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.seconds = 0.0
        self.calls = 0
        self._mpi = load_mpi()

    def allreduce(self, a: np.ndarray) -> None:
        """a <- the sum of every rank's a, in place (a C-contiguous)."""
        start = time.perf_counter()
        self.comm.Allreduce(self._mpi.IN_PLACE, a, op=self._mpi.SUM)
        self._count(start)

    def gather_columns(self, part: np.ndarray, widths: list[int], out: np.ndarray | None) -> np.ndarray:
        """Rank r's part (R, widths[r]) -> on rank 0, (R, sum(widths)) with the parts side by side
        (written into out when given); the other ranks get their part back."""
        start = time.perf_counter()
        rows = part.shape[0]
        if self.rank != 0:
            self.comm.Gatherv(part, None, root=0)
            self._count(start)
            return part
        counts = [rows * w for w in widths]
        blocks = np.empty(sum(counts), dtype=part.dtype)
        self.comm.Gatherv(part, [blocks, counts], root=0)
        self._count(start)
        out = np.empty((rows, sum(widths)), dtype=part.dtype) if out is None else out
        column = offset = 0
        for w, n in zip(widths, counts):  # rank blocks arrive one after the other, (R, w) each
            out[:, column : column + w] = blocks[offset : offset + n].reshape(rows, w)
            column, offset = column + w, offset + n
        return out

    def _count(self, start: float) -> None:
        self.seconds += time.perf_counter() - start
        self.calls += 1


_bound = threading.local()


def bind(collectives: Collectives) -> None:
    """Make `collectives` the communicator of the parallel layers called from this thread."""
    _bound.collectives = collectives


def bound() -> Collectives:
    collectives = getattr(_bound, "collectives", None)
    if collectives is None:
        raise RuntimeError("a tensor-parallel layer was called from a thread with no communicator bound")
    return collectives


class RowParallelLinear:
    """A linear over this rank's input columns: y = sum over ranks (x_r @ W_r.T), then + bias + residual.
    The bias and residual are added after the sum, once (that is why models pass the residual in)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, in_features: int):
        self.local = Linear(weight)
        self.bias = bias
        self._in_features = in_features

    @property
    def in_features(self) -> int:
        return self._in_features

    @property
    def out_features(self) -> int:
        return self.local.out_features

    def __call__(self, x, *, activation=None, residual=None, out=None, n_threads=1) -> np.ndarray:
        if activation is not None:
            raise ValueError("a row-parallel linear cannot apply an activation: it only has a partial sum")
        y = self.local(x, out=out, n_threads=n_threads)
        bound().allreduce(y)
        if self.bias is not None:
            y += self.bias
        if residual is not None:
            y += residual
        return y


class VocabParallelEmbedding:
    """Rows [start, start + len(table)) of a token table; the other rows live on the other ranks."""

    def __init__(self, table: np.ndarray, start: int, vocab_size: int, scale: float):
        self.local = Embedding(table, scale)
        self.start = start
        self._vocab_size = vocab_size

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def dim(self) -> int:
        return self.local.dim

    @property
    def table(self) -> np.ndarray:
        """This rank's rows (what a model reads its device and dtype from)."""
        return self.local.table

    @property
    def scale(self) -> float:
        return self.local.scale

    def __call__(self, ids, *, out=None, n_threads=1) -> np.ndarray:
        """ids (...,) in [0, V) -> (..., C), identical on every rank: one rank holds each row and the
        others add zeros, so the sum is exact."""
        local = np.asarray(ids) - self.start
        mine = (local >= 0) & (local < self.local.vocab_size)
        h = self.local(np.where(mine, local, 0), out=out, n_threads=n_threads)
        h[~mine] = 0.0
        bound().allreduce(h)
        return h


class VocabParallelHead:
    """The output projection over this rank's vocabulary slice (rows of the table, its part of the
    bias); rank 0 gets the logits of the whole vocabulary, the other ranks their own slice."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, widths: list[int]):
        self.local = Linear(weight, bias)
        self.widths = widths

    @property
    def in_features(self) -> int:
        return self.local.in_features

    @property
    def out_features(self) -> int:
        return sum(self.widths)

    def __call__(self, x, *, activation=None, residual=None, out=None, n_threads=1) -> np.ndarray:
        if activation is not None or residual is not None:
            raise ValueError("the vocabulary-parallel output projection takes no activation or residual")
        part = self.local(x, n_threads=n_threads)  # (..., V_r)
        rows = part.reshape(-1, part.shape[-1])
        logits = bound().gather_columns(rows, self.widths, None if out is None else out.reshape(rows.shape[0], -1))
        return logits.reshape(*part.shape[:-1], logits.shape[-1])


# -- the sharding pass -------------------------------------------------------------------------------


class Partition:
    """Rank `rank` of `size`: which part of a dimension it holds."""

    def __init__(self, rank: int, size: int):
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is not in [0, {size})")
        self.rank, self.size = rank, size

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's [lo, hi) of n items split as evenly as they go (the first n % size get one more)."""
        widths = self.widths(n)
        lo = sum(widths[: self.rank])
        return lo, lo + widths[self.rank]

    def widths(self, n: int) -> list[int]:
        base, extra = divmod(n, self.size)
        return [base + (r < extra) for r in range(self.size)]

    def heads(self, n_kv_heads: int, n_heads: int) -> tuple[int, int]:
        """This rank's key/value heads [lo, hi): heads cannot be cut, so they must divide evenly."""
        if n_kv_heads % self.size:
            raise ValueError(
                f"tensor parallelism over {self.size} ranks needs a key/value head count that divides by "
                f"{self.size}; this model has {n_heads} attention heads over {n_kv_heads} key/value heads"
            )
        per_rank = n_kv_heads // self.size
        return self.rank * per_rank, (self.rank + 1) * per_rank


def shard_model(model, rank: int, size: int):
    """Cut `model`, just loaded on this rank, into rank `rank`'s shard of `size`, in place; returns it.
    ValueError when its head counts do not divide by `size`, or for a model it does not know."""
    sharder = _Sharder(Partition(rank, size))
    if isinstance(model, DecoderOnlyModel):
        model.embedding = sharder.embedding(model.embedding)
        for layer in model.layers:
            sharder.self_attention(layer.attention)
            sharder.feed_forward(layer.ffn)
        model.lm_head = sharder.head(model.lm_head)
    elif isinstance(model, EncoderDecoderModel):
        sharder.encoder(model.encoder)
        model.decoder_embeddings.tokens = sharder.embedding(model.decoder_embeddings.tokens)
        for layer in model.decoder_layers:
            sharder.self_attention(layer.self_attention)
            sharder.cross_attention(layer.cross_attention)
            sharder.feed_forward(layer.ffn)
        model.lm_head = sharder.head(model.lm_head)
    elif isinstance(model, EncoderModel):
        sharder.encoder(model.encoder)
    else:
        raise ValueError(f"tensor parallelism does not support {type(model).__name__} models")
    sharder.release_pages()
    return model


class _Sharder:
    """One pass: this rank's part of every block, and what the pass read from mapped files."""

    def __init__(self, part: Partition):
        self.part = part
        # id(table) -> (table, its shard): one shard per token table, so a table tied between the
        # embeddings and the output projection gives one. Tables are held (ids stay unique) until
        # the pass ends.
        self._vocab: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._mappings: dict[int, mmap.mmap] = {}  # the checkpoint files the pass read, by id

    def encoder(self, encoder: TransformerEncoder) -> None:
        encoder.embeddings.tokens = self.embedding(encoder.embeddings.tokens)
        for layer in encoder.layers:
            self.self_attention(layer.attention)
            self.feed_forward(layer.ffn)

    def self_attention(self, attention: SelfAttention) -> None:
        """qkv rows [Q (H*D); K (Hkv*D); V (Hkv*D)] -> this rank's KV heads and their query groups."""
        d, r, h_kv = attention.head_dim, attention.group, attention.n_kv_heads
        h = h_kv * r
        lo, hi = self.part.heads(h_kv, h)
        q, k, v = (lo * r * d, hi * r * d), ((h + lo) * d, (h + hi) * d), ((h + h_kv + lo) * d, (h + h_kv + hi) * d)
        attention.qkv = self.column(attention.qkv, [q, k, v])
        attention.out = self.row(attention.out, lo * r * d, hi * r * d)

    def cross_attention(self, attention: CrossAttention) -> None:
        """q rows (H*D) and kv rows [K (Hkv*D); V (Hkv*D)] -> this rank's heads."""
        d, r = attention.head_dim, attention.group
        h_kv = attention.kv.out_features // (2 * d)
        lo, hi = self.part.heads(h_kv, h_kv * r)
        attention.q = self.column(attention.q, [(lo * r * d, hi * r * d)])
        attention.kv = self.column(attention.kv, [(lo * d, hi * d), ((h_kv + lo) * d, (h_kv + hi) * d)])
        attention.out = self.row(attention.out, lo * r * d, hi * r * d)

    def feed_forward(self, ffn: FeedForward | GatedFeedForward) -> None:
        """Hidden units [lo, hi) of F: rows of up (of gate and of up), columns of down."""
        if isinstance(ffn, GatedFeedForward):
            f = ffn.gate_up.out_features // 2
            lo, hi = self.part.bounds(f)
            ffn.gate_up = self.column(ffn.gate_up, [(lo, hi), (f + lo, f + hi)])
        elif isinstance(ffn, FeedForward):
            lo, hi = self.part.bounds(ffn.up.out_features)
            ffn.up = self.column(ffn.up, [(lo, hi)])
        else:
            raise ValueError(f"tensor parallelism does not support {type(ffn).__name__} feed-forward blocks")
        ffn.down = self.row(ffn.down, lo, hi)

    def column(self, linear: Linear, ranges: list[tuple[int, int]]) -> Linear:
        """The output rows of `ranges`, side by side (several ranges for fused projections)."""
        weight, bias = self._weights(linear)
        return Linear(self._rows(weight, ranges), None if bias is None else self._rows(bias, ranges))

    def row(self, linear: Linear, lo: int, hi: int) -> RowParallelLinear:
        """The input columns [lo, hi): a copy of this rank's part (a column slice is not contiguous)."""
        weight, bias = self._weights(linear)
        return RowParallelLinear(np.ascontiguousarray(weight[:, lo:hi]), bias, linear.in_features)

    def embedding(self, embedding: Embedding) -> VocabParallelEmbedding:
        shard, lo = self._vocab_rows(embedding.table)
        return VocabParallelEmbedding(shard, lo, embedding.vocab_size, embedding.scale)

    def head(self, linear: Linear) -> VocabParallelHead:
        weight, bias = self._weights(linear)
        shard, lo = self._vocab_rows(weight)
        part_bias = None if bias is None else bias[lo : lo + shard.shape[0]].copy()
        return VocabParallelHead(shard, part_bias, self.part.widths(weight.shape[0]))

    def release_pages(self) -> None:
        """Drop from this process the checkpoint pages the pass read: the loader's fused copies read
        whole tensors, and a column slice reads every page its rows cross. The shards that are views of
        the file fault back in the pages they use; the others stay in the page cache (shared, clean)."""
        for mapping in self._mappings.values():
            mapping.madvise(mmap.MADV_DONTNEED)

    def _weights(self, linear) -> tuple[np.ndarray, np.ndarray | None]:
        if not isinstance(linear, Linear):
            raise ValueError(f"tensor parallelism shards float32 Linear layers, not {type(linear).__name__}")
        return linear.weight, linear.bias

    def _vocab_rows(self, table: np.ndarray) -> tuple[np.ndarray, int]:
        lo, hi = self.part.bounds(table.shape[0])
        if id(table) not in self._vocab:
            self._vocab[id(table)] = (table, self._keep(table, slice(lo, hi)))
        return self._vocab[id(table)][1], lo

    def _rows(self, a: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
        if len(ranges) == 1:
            return self._keep(a, slice(*ranges[0]))
        return np.concatenate([a[lo:hi] for lo, hi in ranges])

    def _keep(self, a: np.ndarray, rows: slice) -> np.ndarray:
        """a[rows]: a view when `a` maps a checkpoint file (costing only the pages this rank reads),
        else a copy, so that the loader's whole array can be freed."""
        mapping = _mapping(a)
        if mapping is None:
            return a[rows].copy()
        self._mappings[id(mapping)] = mapping
        return a[rows]


def _mapping(a) -> mmap.mmap | None:
    """The mapped file under array `a` (an np.memmap or a view of one: their bases end at it), if any."""
    while a is not None:
        if isinstance(a, mmap.mmap):
            return a
        a = getattr(a, "base", None)
    return None
