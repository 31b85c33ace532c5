#!/usr/bin/env python3
"""Writes tests/data/npz/: small .npz files as numpy writes them (np.savez: stored members;
np.savez_compressed: deflated), the seeds of fuzz_npz and what test_adm reads back without
../shared. Contents are formulas the test recomputes:
  arr_0 uint8 [3, 5, 4, 3] = (7 i + 3) % 256 over the flat index i
  mu    float32 [6]        = 0.25 i - 1
  sigma float64 [6, 6]     = 1 / (1 + |r - c|)
Run: python3 scripts/make_npz_fixtures.py (numpy 1.24, Debian 12's python3-numpy)."""
import os
import numpy as np

out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "npz")
os.makedirs(out, exist_ok=True)
arr = ((7 * np.arange(3 * 5 * 4 * 3) + 3) % 256).astype(np.uint8).reshape(3, 5, 4, 3)
mu = (0.25 * np.arange(6) - 1).astype(np.float32)
r, c = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
sigma = 1.0 / (1.0 + np.abs(r - c))
np.savez(os.path.join(out, "numpy_stored.npz"), arr_0=arr, mu=mu, sigma=sigma)
np.savez_compressed(os.path.join(out, "numpy_deflated.npz"), arr_0=arr, mu=mu, sigma=sigma)
