"""From a registry ID to the object that implements it.

Each implementation module exposes ``SCHEMES``, a mapping from registry ID to the
per-parameter-set class. The registry's ``provider`` field chooses the module, so moving an
algorithm to another provider is a registry change. ``provider=`` picks another one
explicitly (the interoperability tests and benchmarks use it).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import cast

from qrc.crypto.base import AEAD, KEM, SignatureScheme, _Scheme
from qrc.crypto.errors import AlgorithmNotAllowed, UnsupportedAlgorithm
from qrc.crypto.registry import Kind, Status, get_info

__all__ = ["PROVIDERS", "get_aead", "get_kem", "get_scheme", "get_signature", "providers_of"]

# provider name -> modules that implement its algorithms
PROVIDERS: dict[str, tuple[str, ...]] = {
    "pyca": ("qrc.crypto.backends.pyca", "qrc.crypto.backends.pyca_dhkem"),
    "pqcrypto": ("qrc.crypto.backends.pqcrypto",),
    "pycryptodome": ("qrc.crypto.backends.pycryptodome",),
    "qrc": ("qrc.crypto.hybrid", "qrc.crypto.composite"),
}


def _schemes_of(module_name: str) -> dict[str, type[_Scheme]]:
    module = importlib.import_module(module_name)
    return cast(dict[str, type[_Scheme]], module.SCHEMES)


@cache
def _instance(algorithm: str, provider: str) -> _Scheme:
    try:
        modules = PROVIDERS[provider]
    except KeyError:
        raise UnsupportedAlgorithm(f"unknown provider {provider!r}") from None
    for module_name in modules:
        cls = _schemes_of(module_name).get(algorithm)
        if cls is not None:
            return cls()
    raise UnsupportedAlgorithm(f"provider {provider!r} does not implement {algorithm}")


def providers_of(algorithm: str) -> list[str]:
    """Every provider that implements ``algorithm`` (the registry's choice first)."""
    info = get_info(algorithm)
    found = [info.provider]
    for provider, modules in PROVIDERS.items():
        if provider != info.provider and any(info.id in _schemes_of(module) for module in modules):
            found.append(provider)
    return found


def get_scheme(
    algorithm: str, *, provider: str | None = None, allow_disallowed: bool = False
) -> _Scheme:
    """The implementation of ``algorithm`` (registry provider unless ``provider`` is given).

    Raises:
        UnsupportedAlgorithm: unknown ID or provider.
        AlgorithmNotAllowed: the algorithm's status is ``disallowed``.
    """
    info = get_info(algorithm)
    if info.status is Status.DISALLOWED and not allow_disallowed:
        raise AlgorithmNotAllowed(f"{info.id} is disallowed by policy")
    return _instance(info.id, provider or info.provider)


def _typed(algorithm: str, kind: Kind, provider: str | None) -> _Scheme:
    get_info(algorithm, kind)
    return get_scheme(algorithm, provider=provider)


def get_kem(algorithm: str, *, provider: str | None = None) -> KEM:
    """The KEM ``algorithm`` (``UnsupportedAlgorithm`` if it is not a KEM)."""
    return cast(KEM, _typed(algorithm, Kind.KEM, provider))


def get_signature(algorithm: str, *, provider: str | None = None) -> SignatureScheme:
    """The signature scheme ``algorithm`` (``UnsupportedAlgorithm`` if it is not one)."""
    return cast(SignatureScheme, _typed(algorithm, Kind.SIGNATURE, provider))


def get_aead(algorithm: str, *, provider: str | None = None) -> AEAD:
    """The AEAD ``algorithm`` (``UnsupportedAlgorithm`` if it is not one)."""
    return cast(AEAD, _typed(algorithm, Kind.AEAD, provider))
