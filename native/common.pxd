# Declarations shared by the kernel modules.

# Activation codes, the same numbers as aiotranslate.ops.reference.ACT_*.
cdef enum Activation:
    ACT_NONE = 0
    ACT_RELU = 1
    ACT_GELU = 2
    ACT_GELU_TANH = 3
    ACT_SILU = 4

ctypedef fused floating:
    float
    double
