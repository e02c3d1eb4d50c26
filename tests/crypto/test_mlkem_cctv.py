"""C2SP CCTV ML-KEM edge cases, through every ML-KEM provider (``cctv/ML-KEM``).

* ``modulus/``: encapsulation keys with one coefficient in ``q .. 4095`` (every value at
  every position): FIPS 203's modulus check must refuse each one when the key is loaded,
  so no encapsulation ever runs on it. Checked for pyca, pycryptodome and the hybrids
  whose ML-KEM half is such a key.
* ``strcmp/``: ciphertexts that an implementation comparing with ``strcmp`` (stopping at a
  zero byte) would accept instead of rejecting implicitly; decapsulation must give the
  recorded implicit-rejection key ``K``. The vectors give only the expanded ``dk``, which
  pyca cannot load (its keys come from seeds), so they run through pycryptodome's provider.
* ``unluckysample/`` and ``intermediate/``: keys whose matrix sampling needs unusually many
  SHAKE-128 bytes, and the FIPS 203 walk-through key. Their ``d`` follows FIPS 203 ipd,
  whose K-PKE.KeyGen lacks the final standard's domain separator (``G(d || k)``), so
  ``d || z`` does not give their ``ek`` under FIPS 203 (key generation is covered by
  Wycheproof). ``ek``, ``dk``, ``m``, ``c`` and ``K`` are final-standard values: every
  provider encapsulates to ``ek`` (which re-samples the unlucky matrix from ``ek``'s
  rho) and the expanded ``dk`` opens the result; pycryptodome, which takes ``m``, must
  reproduce ``c`` and ``K`` exactly.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from qrc.crypto.backends.pycryptodome import SCHEMES as PYCRYPTODOME
from qrc.crypto.backends.pycryptodome import PycryptodomeKemPrivateKey
from qrc.crypto.errors import KeyFormatError
from qrc.crypto.hybrid import P384MLKEM1024, XWing
from qrc.crypto.schemes import get_kem
from tests.crypto.mlkem_kat import PROVIDERS, SETS, encaps_internal
from tests.vectors import vectors_dir

pytestmark = pytest.mark.vectors


def _folder() -> Path:
    return vectors_dir() / "cctv" / "ML-KEM"


_FIELDS = ("ek", "dk", "m", "c", "K")


def _fields(path: Path) -> dict[str, bytes]:
    """The first ``ek``, ``dk``, ``m``, ``c`` and ``K`` (hex) of a CCTV file."""
    fields: dict[str, bytes] = {}
    for line in path.read_text("utf-8").splitlines():
        name, sep, value = line.partition(" = ")
        if sep and name.strip() in _FIELDS:
            fields.setdefault(name.strip(), bytes.fromhex(value.strip()))
    return fields


def _expanded_key(algorithm: str, dk: bytes) -> PycryptodomeKemPrivateKey:
    """pycryptodome's provider key around an expanded ``dk`` (the vectors give no seed)."""
    from Crypto.PublicKey import MLKEM

    scheme = PYCRYPTODOME[algorithm]()
    expanded = MLKEM.construct(param_set=scheme.param_set, expanded_dk=dk)  # type: ignore[attr-defined]
    return PycryptodomeKemPrivateKey(scheme, expanded)  # type: ignore[arg-type]


def _bad_keys(algorithm: str) -> list[bytes]:
    with gzip.open(_folder() / "modulus" / f"{algorithm}.txt.gz", "rt", encoding="ascii") as f:
        return [bytes.fromhex(line) for line in f.read().split()]


@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_modulus_every_unreduced_key_is_refused(algorithm: str, provider: str) -> None:
    kem = get_kem(algorithm, provider=provider)
    keys = _bad_keys(algorithm)
    assert len(keys) >= 700
    size = kem.info.public_key_size
    for ek in keys:
        assert len(ek) == size
        with pytest.raises(KeyFormatError):
            kem.load_public(ek)


@pytest.mark.parametrize(
    ("scheme", "algorithm"), [(XWing, "ML-KEM-768"), (P384MLKEM1024, "ML-KEM-1024")]
)
def test_modulus_hybrid_with_an_unreduced_mlkem_half_is_refused(
    scheme: type[XWing] | type[P384MLKEM1024], algorithm: str
) -> None:
    kem = scheme()
    classical = kem.generate().public_key().public_bytes()[scheme._mlkem_pk_size :]
    for ek in _bad_keys(algorithm)[::7]:
        with pytest.raises(KeyFormatError):
            kem.load_public(ek + classical)


@pytest.mark.parametrize("algorithm", SETS)
def test_strcmp_decapsulation_rejects_implicitly(algorithm: str) -> None:
    fields = _fields(_folder() / "strcmp" / f"{algorithm}.txt")
    assert _expanded_key(algorithm, fields["dk"]).decapsulate(fields["c"]) == fields["K"]


@pytest.mark.parametrize("algorithm", SETS)
@pytest.mark.parametrize("kind", ["unluckysample", "intermediate"])
def test_encapsulation_with_fixed_m(algorithm: str, kind: str) -> None:
    fields = _fields(_folder() / kind / f"{algorithm}.txt")
    assert encaps_internal(fields["ek"], fields["m"]) == (fields["c"], fields["K"])


@pytest.mark.parametrize("algorithm", SETS)
@pytest.mark.parametrize("kind", ["unluckysample", "intermediate"])
def test_decapsulation_with_the_expanded_key(algorithm: str, kind: str) -> None:
    fields = _fields(_folder() / kind / f"{algorithm}.txt")
    assert _expanded_key(algorithm, fields["dk"]).decapsulate(fields["c"]) == fields["K"]


@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
@pytest.mark.parametrize("kind", ["unluckysample", "intermediate"])
def test_every_provider_encapsulates_to_the_unlucky_keys(
    algorithm: str, provider: str, kind: str
) -> None:
    """Encapsulation regenerates the matrix from ``ek``'s rho, the unlucky part."""
    fields = _fields(_folder() / kind / f"{algorithm}.txt")
    public = get_kem(algorithm, provider=provider).load_public(fields["ek"])
    receiver = _expanded_key(algorithm, fields["dk"])
    for _ in range(3):
        ct, shared = public.encapsulate()
        assert receiver.decapsulate(ct) == shared
