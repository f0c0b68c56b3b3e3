"""Many runs at once, on top of npvae.runs: sweeps over settings and seeds (sweep/, locally or
on a Dask cluster, with a resumable state and a report of means and intervals) and active
learning (active/: query strategies against random labels, or a person labelling). It may
import every floor below it; nothing in npvae imports it.
"""
