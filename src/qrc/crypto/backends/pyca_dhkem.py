"""X25519, P-256 and P-384 as RFC 9180 DHKEMs (section 4.1), on pyca/cryptography.

Classical: for the hybrids and for inventory. ``encapsulate`` generates an ephemeral key
pair and derives the shared secret with ``ExtractAndExpand`` over the DH output and the
KEM context (``enc || pkRm``), labelled with the suite ID, as RFC 9180 specifies; raw
private keys are the 32-byte X25519 key and the big-endian scalar for the NIST curves.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from qrc.crypto.backends.pyca import PycaKemPrivateKey, PycaKemPublicKey, _i2osp, _PycaKem
from qrc.crypto.base import _Scheme
from qrc.crypto.errors import DecryptionError, KeyFormatError

__all__ = ["DHKEM_P256", "DHKEM_P384", "DHKEM_X25519", "SCHEMES"]


class _DHKEM(_PycaKem):
    """DHKEM from RFC 9180 §4.1: a classical KEM out of Diffie-Hellman.

    ``shared_secret = ExtractAndExpand(DH(skE, pkR), enc || pkR)`` with the HPKE labels,
    so the secret is bound to both public keys.
    """

    kem_id: ClassVar[int]
    hash_name: ClassVar[str]
    secret_size: ClassVar[int]

    def _labeled_extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        suite = b"KEM" + _i2osp(self.kem_id, 2)
        return hmac.new(salt or b"\0" * self._hash_len(), b"HPKE-v1" + suite + label + ikm,
                        self.hash_name).digest()  # fmt: skip

    def _labeled_expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        suite = b"KEM" + _i2osp(self.kem_id, 2)
        labeled_info = _i2osp(length, 2) + b"HPKE-v1" + suite + label + info
        out, block, counter = b"", b"", 1
        while len(out) < length:  # HKDF-Expand (RFC 5869)
            block = hmac.new(prk, block + labeled_info + bytes([counter]), self.hash_name).digest()
            out += block
            counter += 1
        return out[:length]

    def _hash_len(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        prk = self._labeled_extract(b"", b"eae_prk", dh)
        return self._labeled_expand(prk, b"shared_secret", kem_context, self.secret_size)

    def _exchange(self, private: Any, public: Any) -> bytes:
        raise NotImplementedError

    def _encapsulate(self, public: PycaKemPublicKey) -> tuple[bytes, bytes]:
        ephemeral = self._generate()
        try:
            dh = self._exchange(ephemeral, public.to_pyca())
        except ValueError:
            # RFC 9180 §7.1.4: an all-zero X25519 output (low-order public key) aborts Encap.
            raise KeyFormatError(f"{self.algorithm} public key is a low-order point") from None
        enc = self._public_raw(ephemeral.public_key())
        return enc, self._extract_and_expand(dh, enc + public.public_bytes())

    def _decapsulate(self, private: PycaKemPrivateKey, ciphertext: bytes) -> bytes:
        try:
            if len(ciphertext) != self.ciphertext_size:
                raise ValueError
            peer = self._load_public(ciphertext)
            dh = self._exchange(private.to_pyca(), peer)
        except ValueError:
            raise DecryptionError from None
        return self._extract_and_expand(dh, ciphertext + private.public_key().public_bytes())


class DHKEM_X25519(_DHKEM):
    """X25519 as DHKEM(X25519, HKDF-SHA256). Classical: for hybrids and inventory."""

    algorithm = "X25519"
    kem_id, hash_name, secret_size = 0x0020, "sha256", 32
    private_size = public_size = ciphertext_size = 32

    def _generate(self) -> Any:
        return x25519.X25519PrivateKey.generate()

    def _load_private(self, data: bytes) -> Any:
        return x25519.X25519PrivateKey.from_private_bytes(data)

    def _load_public(self, data: bytes) -> Any:
        return x25519.X25519PublicKey.from_public_bytes(data)

    def _exchange(self, private: Any, public: Any) -> bytes:
        # pyca rejects an all-zero shared secret (small-order point) with ValueError.
        return bytes(private.exchange(public))


class _DHKEMNist(_DHKEM):
    curve: ClassVar[ec.EllipticCurve]

    def _generate(self) -> Any:
        return ec.generate_private_key(self.curve)

    def _load_private(self, data: bytes) -> Any:
        return ec.derive_private_key(int.from_bytes(data, "big"), self.curve)

    def _load_public(self, data: bytes) -> Any:
        return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, data)

    def _private_raw(self, key: Any) -> bytes:
        return _i2osp(key.private_numbers().private_value, self.private_size)

    def _public_raw(self, key: Any) -> bytes:
        return bytes(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def _exchange(self, private: Any, public: Any) -> bytes:
        return bytes(private.exchange(ec.ECDH(), public))


class DHKEM_P256(_DHKEMNist):
    """P-256 as DHKEM(P-256, HKDF-SHA256). Classical: for hybrids and inventory."""

    algorithm = "P-256"
    kem_id, hash_name, secret_size, curve = 0x0010, "sha256", 32, ec.SECP256R1()
    private_size, public_size, ciphertext_size = 32, 65, 65


class DHKEM_P384(_DHKEMNist):
    """P-384 as DHKEM(P-384, HKDF-SHA384). Classical: for hybrids and inventory."""

    algorithm = "P-384"
    kem_id, hash_name, secret_size, curve = 0x0011, "sha384", 48, ec.SECP384R1()
    private_size, public_size, ciphertext_size = 48, 97, 97


SCHEMES: dict[str, type[_Scheme]] = {
    cls.algorithm: cls for cls in (DHKEM_X25519, DHKEM_P256, DHKEM_P384)
}
