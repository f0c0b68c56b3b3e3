"""The engine: npvae.core's math made fast, block by block. engine.py is the one Engine
(threads beside single-threaded BLAS, timing, partial sums in thread order, chunked evaluation,
loss weights by name); blocks.py registers fused substitutes for core's blocks (kernels/, each
beside its NumPy twin); gmm.py runs model gmm, dense or conv, on them (GMMEngine); mixture.py
the seed's model with its split decoder (FastModel); consistency.py the consistency term;
reference.py core's readable path on the same interface. Also the fused AdamW step (optim.py),
image augmentation (augment.py) and the choice of BLAS kernels made before NumPy loads
(blas.py). It may import npvae.core, never the floors above it.
"""
