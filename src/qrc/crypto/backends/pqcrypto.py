"""Algorithms implemented by pqcrypto (PQClean C code behind a Rust extension).

The registry's provider for HQC-128/192/256, the ten Classic McEliece sets and the twelve
SLH-DSA sets. ML-DSA-44/65/87 are here too, as alternates to pyca's (their registry
provider) for the interoperability tests and benchmarks. ML-KEM is not: pqcrypto cannot
derive an ML-KEM key from its FIPS 203 seed, so :mod:`qrc.crypto.backends.pycryptodome`
provides it.

Raw private encodings (what ``private_bytes()`` returns and ``load_private()`` takes):

* HQC: the reference implementation's secret key, which begins with the public key
  (``sk[:public_key_size]``).
* Classic McEliece: the reference secret key *followed by the public key*, ``sk || pk``.
  The reference ``sk`` does not hold the public key and recomputing it means running key
  generation's Gaussian elimination, so a private key carries its public key with it:
  6492 + 261120 bytes for 348864(f), up to 14120 + 1357824 for 8192128(f).
  :meth:`load_private` checks that the two halves belong together (encapsulate under
  ``pk``, decapsulate with ``sk``).
* SLH-DSA: the FIPS 205 secret key ``SK.seed || SK.prf || PK.seed || PK.root`` (its
  second half is the public key).
* ML-DSA (alternate only): pqcrypto's FIPS 204 *expanded* secret key followed by the
  public key, ``sk || pk``, because pqcrypto cannot derive keys from the 32-byte seed
  that pyca (the registry provider) uses. These keys do not move between providers;
  public keys and signatures do.

Every verification failure raises :class:`~qrc.crypto.errors.InvalidSignature`; a
ciphertext of the wrong length raises :class:`~qrc.crypto.errors.DecryptionError`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import importlib
import json
from functools import cache
from importlib import resources
from types import ModuleType
from typing import Any, ClassVar, TypeVar, cast

from qrc.crypto.base import (
    KEM,
    KemPrivateKey,
    KemPublicKey,
    SignatureScheme,
    SigningKey,
    VerifyingKey,
    _Scheme,
)
from qrc.crypto.errors import (
    DecryptionError,
    InvalidSignature,
    KeyFormatError,
    SelfTestFailure,
    UnsupportedAlgorithm,
)

__all__ = [
    "KAT_CONTEXT",
    "KAT_MESSAGE",
    "SCHEMES",
    "PqKemPrivateKey",
    "PqKemPublicKey",
    "PqSigningKey",
    "PqVerifyingKey",
    "known_answer_test",
]

_MAX_CONTEXT = 255


def _check_length(data: bytes, expected: int, what: str) -> None:
    if len(data) != expected:
        raise KeyFormatError(f"{what} must be {expected} bytes, not {len(data)}")


# --------------------------------------------------------------------------- key classes
class PqKemPublicKey(KemPublicKey):
    """A KEM public key: the raw bytes pqcrypto takes."""

    __slots__ = ("_raw", "_scheme")

    def __init__(self, scheme: _PqKem, raw: bytes) -> None:
        self._scheme, self._raw = scheme, raw

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_bytes(self) -> bytes:
        return self._raw

    def encapsulate(self) -> tuple[bytes, bytes]:
        return self._scheme._encapsulate(self._raw)


class PqKemPrivateKey(KemPrivateKey):
    """A KEM private key: its raw encoding and the secret key pqcrypto takes."""

    __slots__ = ("_public", "_raw", "_scheme", "_sk")

    def __init__(self, scheme: _PqKem, raw: bytes, sk: bytes, public: PqKemPublicKey) -> None:
        self._scheme, self._raw, self._sk, self._public = scheme, raw, sk, public

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_key(self) -> PqKemPublicKey:
        return self._public

    def private_bytes(self) -> bytes:
        return self._raw

    def decapsulate(self, ciphertext: bytes) -> bytes:
        return self._scheme._decapsulate(self._sk, bytes(ciphertext))


class PqVerifyingKey(VerifyingKey):
    """A signature public key."""

    __slots__ = ("_raw", "_scheme")

    def __init__(self, scheme: _PqSignature, raw: bytes) -> None:
        self._scheme, self._raw = scheme, raw

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_bytes(self) -> bytes:
        return self._raw

    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> None:
        self._scheme._verify(self._raw, bytes(signature), bytes(message), bytes(context))


class PqSigningKey(SigningKey):
    """A signing key: its raw encoding and the secret key pqcrypto takes."""

    __slots__ = ("_public", "_raw", "_scheme", "_sk")

    def __init__(self, scheme: _PqSignature, raw: bytes, sk: bytes, public: PqVerifyingKey) -> None:
        self._scheme, self._raw, self._sk, self._public = scheme, raw, sk, public

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_key(self) -> PqVerifyingKey:
        return self._public

    def private_bytes(self) -> bytes:
        return self._raw

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        return self._scheme._sign(self._sk, bytes(message), bytes(context))


# --------------------------------------------------------------------------- KEMs
class _PqLibrary:
    """The pqcrypto submodule of a parameter set, and the sizes it declares."""

    _package: ClassVar[str]  # "kem" or "sign"
    _module: ClassVar[str]  # its submodule, e.g. "hqc_128" or "slh_dsa_sha2_128s"

    @property
    def _lib(self) -> Any:
        return _library(self._package, self._module)

    @property
    def public_size(self) -> int:
        return int(self._lib.PUBLIC_KEY_SIZE)

    @property
    def private_size(self) -> int:
        """Size of the raw private encoding."""
        return int(self._lib.SECRET_KEY_SIZE)


class _PqKem(_PqLibrary, KEM):
    """Shared plumbing; subclasses say how raw private keys map to pqcrypto's keys."""

    _package = "kem"

    @property
    def ciphertext_size(self) -> int:
        return int(self._lib.CIPHERTEXT_SIZE)

    def generate(self) -> PqKemPrivateKey:
        return self.load_private(self._new_private())

    def load_private(self, data: bytes) -> PqKemPrivateKey:
        data = bytes(data)
        _check_length(data, self.private_size, f"{self.algorithm} private key")
        sk, pk = self._expand(data)
        return PqKemPrivateKey(self, data, sk, PqKemPublicKey(self, pk))

    def load_public(self, data: bytes) -> PqKemPublicKey:
        data = bytes(data)
        _check_length(data, self.public_size, f"{self.algorithm} public key")
        self._check_public(data)
        return PqKemPublicKey(self, data)

    def _new_private(self) -> bytes:
        """A fresh raw private encoding."""
        _pk, sk = self._lib.keygen()
        return bytes(sk)

    def _expand(self, raw: bytes) -> tuple[bytes, bytes]:
        """Return ``(pqcrypto secret key, public key)`` for a raw private encoding."""
        raise NotImplementedError

    def _check_public(self, pk: bytes) -> None:
        """Validate a public key of the right length (nothing to check by default)."""

    def _encapsulate(self, pk: bytes) -> tuple[bytes, bytes]:
        ct, ss = self._lib.encaps(pk)
        return bytes(ct), bytes(ss)

    def _decapsulate(self, sk: bytes, ciphertext: bytes) -> bytes:
        if len(ciphertext) != self.ciphertext_size:
            raise DecryptionError
        try:
            return bytes(self._lib.decaps(sk, ciphertext))
        except ValueError:
            raise DecryptionError from None


class _HQC(_PqKem):
    """HQC: the reference secret key starts with the public key."""

    def _expand(self, raw: bytes) -> tuple[bytes, bytes]:
        return raw, raw[: self.public_size]


class _McEliece(_PqKem):
    """Classic McEliece: raw private key ``sk || pk`` (see the module docstring)."""

    @property
    def private_size(self) -> int:
        return int(self._lib.SECRET_KEY_SIZE) + self.public_size

    def _new_private(self) -> bytes:
        pk, sk = self._lib.keygen()
        return bytes(sk) + bytes(pk)

    def _expand(self, raw: bytes) -> tuple[bytes, bytes]:
        split = int(self._lib.SECRET_KEY_SIZE)
        sk, pk = raw[:split], raw[split:]
        ct, ss = self._encapsulate(pk)
        if not hmac.compare_digest(self._decapsulate(sk, ct), ss):
            raise KeyFormatError(f"{self.algorithm} secret and public key do not match")
        return sk, pk


# --------------------------------------------------------------------------- signatures
class _PqSignature(_PqLibrary, SignatureScheme):
    """Shared plumbing for FIPS 204/205 signatures with a context string."""

    _package = "sign"

    @property
    def signature_size(self) -> int:
        return int(self._lib.SIGNATURE_SIZE)

    def generate(self) -> PqSigningKey:
        pk, sk = self._lib.keygen()
        return self.load_private(self._raw_private(bytes(sk), bytes(pk)))

    def load_private(self, data: bytes) -> PqSigningKey:
        data = bytes(data)
        _check_length(data, self.private_size, f"{self.algorithm} private key")
        sk, pk = self._expand(data)
        return PqSigningKey(self, data, sk, PqVerifyingKey(self, pk))

    def load_public(self, data: bytes) -> PqVerifyingKey:
        data = bytes(data)
        _check_length(data, self.public_size, f"{self.algorithm} public key")
        return PqVerifyingKey(self, data)

    def _raw_private(self, sk: bytes, pk: bytes) -> bytes:
        raise NotImplementedError

    def _expand(self, raw: bytes) -> tuple[bytes, bytes]:
        """Return ``(pqcrypto secret key, public key)`` for a raw private encoding."""
        raise NotImplementedError

    def _sign(self, sk: bytes, message: bytes, context: bytes) -> bytes:
        if len(context) > _MAX_CONTEXT:
            raise ValueError(f"context is at most {_MAX_CONTEXT} bytes")
        return bytes(self._lib.sign(sk, message, context=context))

    def _verify(self, pk: bytes, signature: bytes, message: bytes, context: bytes) -> None:
        if len(signature) != self.signature_size or len(context) > _MAX_CONTEXT:
            raise InvalidSignature
        try:
            self._lib.verify(pk, message, signature, context=context)
        except ValueError:  # pqcrypto's InvalidSignatureError is a ValueError too
            raise InvalidSignature from None


class _SLHDSA(_PqSignature):
    """SLH-DSA: the FIPS 205 secret key, whose second half is the public key."""

    def _raw_private(self, sk: bytes, pk: bytes) -> bytes:
        return sk

    def _expand(self, raw: bytes) -> tuple[bytes, bytes]:
        return raw, raw[len(raw) // 2 :]


class _MLDSA(_PqSignature):
    """ML-DSA alternate: raw private key is the expanded ``sk || pk`` (module docstring)."""

    @property
    def private_size(self) -> int:
        return int(self._lib.SECRET_KEY_SIZE) + self.public_size

    def _raw_private(self, sk: bytes, pk: bytes) -> bytes:
        return sk + pk

    def _expand(self, raw: bytes) -> tuple[bytes, bytes]:
        split = int(self._lib.SECRET_KEY_SIZE)
        sk, pk = raw[:split], raw[split:]
        # FIPS 204 sk = rho || K || tr || ..., pk = rho || t1, and tr = H(pk, 64).
        if sk[:32] != pk[:32] or sk[64:128] != hashlib.shake_256(pk).digest(64):
            raise KeyFormatError(f"{self.algorithm} secret and public key do not match")
        return sk, pk


# --------------------------------------------------------------------------- the classes
@cache
def _library(kind: str, name: str) -> ModuleType:
    return importlib.import_module(f"pqcrypto.{kind}.{name}")


_B = TypeVar("_B", bound=_Scheme)


def _scheme_class(name: str, base: type[_B], algorithm: str, module: str) -> type[_B]:
    """Make the per-parameter-set subclass ``name`` of ``base``."""
    doc = f"{algorithm} through pqcrypto (module ``{module}``)."
    attrs = {"algorithm": algorithm, "_module": module, "__doc__": doc, "__module__": __name__}
    return cast(type[_B], type(name, (base,), attrs))


HQC128 = _scheme_class("HQC128", _HQC, "HQC-128", "hqc_128")
HQC192 = _scheme_class("HQC192", _HQC, "HQC-192", "hqc_192")
HQC256 = _scheme_class("HQC256", _HQC, "HQC-256", "hqc_256")
MLDSA44 = _scheme_class("MLDSA44", _MLDSA, "ML-DSA-44", "ml_dsa_44")
MLDSA65 = _scheme_class("MLDSA65", _MLDSA, "ML-DSA-65", "ml_dsa_65")
MLDSA87 = _scheme_class("MLDSA87", _MLDSA, "ML-DSA-87", "ml_dsa_87")

_MCELIECE_SETS = ("348864", "460896", "6688128", "6960119", "8192128")
_SLH_SETS = ("128s", "128f", "192s", "192f", "256s", "256f")

MCELIECE: dict[str, type[_McEliece]] = {
    f"Classic-McEliece-{n}{f}": _scheme_class(
        f"ClassicMcEliece{n}{f}", _McEliece, f"Classic-McEliece-{n}{f}", f"mceliece_{n}{f}"
    )
    for n in _MCELIECE_SETS
    for f in ("", "f")
}
SLHDSA: dict[str, type[_SLHDSA]] = {
    f"SLH-DSA-{h}-{p}": _scheme_class(
        f"SLHDSA_{h}_{p}", _SLHDSA, f"SLH-DSA-{h}-{p}", f"slh_dsa_{h.lower()}_{p}"
    )
    for h in ("SHA2", "SHAKE")
    for p in _SLH_SETS
}

SCHEMES: dict[str, type[_Scheme]] = {
    cls.algorithm: cls for cls in (HQC128, HQC192, HQC256, MLDSA44, MLDSA65, MLDSA87)
}
SCHEMES.update(MCELIECE)
SCHEMES.update(SLHDSA)


# --------------------------------------------------------------------------- self-test
KAT_MESSAGE = b"qrc known-answer test"
KAT_CONTEXT = b"qrc-kat"


@cache
def _kat_data() -> dict[str, dict[str, str]]:
    raw = resources.files("qrc.crypto").joinpath("data/kat.json.gz").read_bytes()
    data: dict[str, dict[str, str]] = json.loads(gzip.decompress(raw))
    return data


def known_answer_test(algorithm: str) -> None:
    """Run the stored known-answer test of an HQC, Classic McEliece or SLH-DSA set.

    The answers come from ``scripts/make_kat.py``: pqcrypto cannot be seeded, so they were
    recorded once (a decapsulation, a signature) and are checked here. KEMs: the SHA-256 of
    the shared secret of a stored ciphertext under a stored secret key. SLH-DSA: a stored
    signature must verify, and must not verify for another message.

    Raises:
        SelfTestFailure: the answer differs.
        UnsupportedAlgorithm: no answer is stored for ``algorithm``.
    """
    entry = _kat_data().get(algorithm)
    if entry is None:
        raise UnsupportedAlgorithm(f"no stored known answer for {algorithm}")
    # Classic McEliece "f" sets decapsulate exactly as their plain twins: they share one record.
    entry = _kat_data().get(entry.get("same_as", ""), entry)
    scheme = SCHEMES[algorithm]()
    try:
        if isinstance(scheme, _PqKem):
            sk, ct = base64.b64decode(entry["sk"]), base64.b64decode(entry["ct"])
            ss = scheme._decapsulate(sk, ct)
            ok = hashlib.sha256(ss).hexdigest() == entry["ss_sha256"]
        elif isinstance(scheme, _PqSignature):
            public = scheme.load_public(base64.b64decode(entry["pk"]))
            signature = base64.b64decode(entry["sig"])
            ok = public.is_valid(signature, KAT_MESSAGE, KAT_CONTEXT) and not public.is_valid(
                signature, KAT_MESSAGE + b"!", KAT_CONTEXT
            )
        else:
            ok = False
    except (KeyError, KeyFormatError, DecryptionError, ValueError):  # a damaged record
        ok = False
    if not ok:
        raise SelfTestFailure(f"{algorithm}: known-answer test failed")
