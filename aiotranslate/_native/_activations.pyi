from ._types import Floats

def bias_activation(x: Floats, bias: Floats | None, act: int, out: Floats | None,
                    n_threads: int) -> Floats | None: ...  # out None: a new array, returned
def swiglu(x: Floats, out: Floats | None, n_threads: int) -> Floats | None: ...  # out None: a new array, returned
