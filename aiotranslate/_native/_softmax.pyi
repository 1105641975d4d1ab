from ._types import Floats, Int32s

def softmax(x: Floats, out: Floats, scale: float, mask: Floats | None, lengths: Int32s | None, causal_q: int,
            log: bool, n_threads: int) -> None: ...
