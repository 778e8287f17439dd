"""vdeploy's kernels (import name `vdeploy_kernels`).

One module per kernel family, each with its contract in the docstring. `reference` holds the plain-torch twins:
the CPU path of the engine and the oracle of every kernel test. Triton modules are imported only on demand
(vdeploy.layers.ops), so importing this package never needs triton.
"""
