#!/usr/bin/python3
# The expected values of tests/test_online_fid.cpp's numpy_permutation case: numpy's legacy
# RandomState(seed).permutation(n), which torch-fidelity uses to shuffle rows before the
# Inception Score's splits. Run with Debian's python3-numpy (1.24 printed the committed values).
import numpy as np

print(list(np.random.RandomState(2020).permutation(20)))
p = np.random.RandomState(2020).permutation(50000)
print(list(p[:8]), list(p[-8:]))
print(list(np.random.RandomState(7).permutation(1000)[:8]))
