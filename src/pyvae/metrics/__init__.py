"""Metrics of a representation: disentanglement scores of latent codes against known factors.

>>> import pyvae
>>> x, factors = pyvae.data.load_sprites(n=2000, size=32, seed=0)
>>> # codes, _ = pyvae.latent.encode_loader(model, loader)        # (N, D) posterior means
>>> # pyvae.metrics.mig(codes, factors), pyvae.metrics.dci(codes, factors)

See :mod:`pyvae.metrics.disentanglement` for the definitions and references; the likelihood and
latent-health numbers of a model are in :func:`pyvae.evaluate`.
"""

from pyvae.metrics.disentanglement import (
    dci,
    dci_from_importance,
    discrete_mutual_information,
    discretize,
    factorvae_score,
    mig,
    sap,
)

__all__ = [
    "dci",
    "dci_from_importance",
    "discrete_mutual_information",
    "discretize",
    "factorvae_score",
    "mig",
    "sap",
]
