import torch

# Tests share a 2-core machine: transformers' reference forward passes run single-threaded.
torch.set_num_threads(1)
