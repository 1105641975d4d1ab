from ._types import Float32s, Int32s

def attention(q: Float32s, k: Float32s, v: Float32s, out: Float32s, scale: float, lengths: Int32s | None,
              causal_q: int, n_threads: int) -> None: ...
