"""Shared test settings."""

import torch

# The fast suite runs tiny networks, where one thread is as fast as two and immune to oversubscription on a
# busy 2-core machine (measured: a tiny supernet step took 24 s with 2 threads under load, 0.5 s with 1).
torch.set_num_threads(1)
