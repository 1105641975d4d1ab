from ._types import Floats

# out None: into a new array, returned.
def layer_norm(x: Floats, gamma: Floats, beta: Floats | None, eps: float, residual: Floats | None,
               out: Floats | None, n_threads: int) -> Floats | None: ...
def rms_norm(x: Floats, gamma: Floats, eps: float, residual: Floats | None, out: Floats | None,
             n_threads: int) -> Floats | None: ...
