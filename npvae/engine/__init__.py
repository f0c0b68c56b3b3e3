"""The fast engine: the same loss and gradient as npvae.core, with preallocated buffers, BLAS
products in place, fused Numba kernels (kernels/, each beside its NumPy twin) and Python threads
beside BLAS (threads.py); FastModel (mixture.py) and FastGMM (gmm.py) for the two models,
ConvGMM (convgmm.py) for model gmm with conv layers, the fused AdamW step (optim.py), image
augmentation (augment.py) and the choice of BLAS kernels made before NumPy loads (blas.py). It
may import npvae.core, never the floors above it.
"""
