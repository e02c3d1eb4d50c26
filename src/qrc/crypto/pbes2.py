"""PKCS#8 ``EncryptedPrivateKeyInfo`` with PBES2 (RFC 8018), for :mod:`qrc.crypto.keyfile`.

Writes PBKDF2-HMAC-SHA256 (16-byte salt) and AES-256-CBC, which OpenSSL and pyca read.
Reads PBKDF2 with HMAC-SHA1/224/256/384/512, scrypt (RFC 7914) and AES-128/192/256-CBC,
with the work factors bounded so that a hostile file cannot make loading take minutes or
gigabytes.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from qrc.crypto.der import (
    INTEGER,
    SEQUENCE,
    DERError,
    Reader,
    decode,
    encode_integer,
    encode_null,
    encode_octet_string,
    encode_oid,
    encode_sequence,
)
from qrc.crypto.errors import KeyFormatError

__all__ = ["decrypt_private_key_info", "encrypt_private_key_info", "short_oid"]

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_HMAC_SHA1 = "1.2.840.113549.2.7"
_PRFS = {
    _HMAC_SHA1: "sha1",
    "1.2.840.113549.2.8": "sha224",
    "1.2.840.113549.2.9": "sha256",
    "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
_HMAC_SHA256 = "1.2.840.113549.2.9"
_AES_CBC = {
    "2.16.840.1.101.3.4.1.2": 16,
    "2.16.840.1.101.3.4.1.22": 24,
    "2.16.840.1.101.3.4.1.42": 32,
}
_AES256_CBC = "2.16.840.1.101.3.4.1.42"
# Bounds on what a key file may ask of us (OpenSSL's defaults are far below them).
_MAX_PBKDF2_ITERATIONS = 10_000_000
_MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
_MAX_SALT = 1024

_UNDECRYPTABLE = "wrong passphrase, or the encrypted key file is corrupted"  # nosec B105


def short_oid(oid: str) -> str:
    """``oid`` cut to a length fit for an error message (a hostile file's OID may be long)."""
    return oid if len(oid) <= 80 else oid[:77] + "..."


def _aes_cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    context = cipher.encryptor() if encrypt else cipher.decryptor()
    return context.update(data) + context.finalize()


def encrypt_private_key_info(der: bytes, passphrase: bytes, *, iterations: int) -> bytes:
    """``EncryptedPrivateKeyInfo`` of PKCS#8 ``der``: PBKDF2-HMAC-SHA256 and AES-256-CBC."""
    if not isinstance(passphrase, bytes):
        raise TypeError("the passphrase must be bytes")
    if not passphrase:
        raise ValueError("the passphrase must not be empty")
    salt, iv = os.urandom(16), os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", passphrase, salt, iterations, 32)
    padder = padding.PKCS7(128).padder()
    ciphertext = _aes_cbc(key, iv, padder.update(der) + padder.finalize(), encrypt=True)
    kdf = encode_sequence(
        encode_oid(_PBKDF2),
        encode_sequence(
            encode_octet_string(salt),
            encode_integer(iterations),
            encode_sequence(encode_oid(_HMAC_SHA256), encode_null()),
        ),
    )
    scheme = encode_sequence(encode_oid(_AES256_CBC), encode_octet_string(iv))
    algorithm = encode_sequence(encode_oid(_PBES2), encode_sequence(kdf, scheme))
    return encode_sequence(algorithm, encode_octet_string(ciphertext))


def _derive_pbkdf2(params: Reader, passphrase: bytes, key_size: int) -> bytes:
    salt = params.read_octet_string()
    iterations = params.read_integer()
    key_length = params.read_integer() if params.peek_tag() == INTEGER else key_size
    prf = _HMAC_SHA1  # the DEFAULT of RFC 8018
    if params.peek_tag() == SEQUENCE:
        prf_reader = params.read_sequence()
        prf = prf_reader.read_oid()
        if not prf_reader.at_end:
            prf_reader.read_null()
        prf_reader.finish()
    params.finish()
    if prf not in _PRFS:
        raise KeyFormatError(f"unsupported PBKDF2 PRF {short_oid(prf)}")
    if not 1 <= iterations <= _MAX_PBKDF2_ITERATIONS:
        raise KeyFormatError("PBKDF2 iteration count out of range")
    if not 1 <= len(salt) <= _MAX_SALT or key_length != key_size:
        raise KeyFormatError("unsupported PBKDF2 parameters")
    return hashlib.pbkdf2_hmac(_PRFS[prf], passphrase, salt, iterations, key_size)


def _derive_scrypt(params: Reader, passphrase: bytes, key_size: int) -> bytes:
    salt = params.read_octet_string()
    cost, block_size, parallel = params.read_integer(), params.read_integer(), params.read_integer()
    key_length = params.read_integer() if params.peek_tag() == INTEGER else key_size
    params.finish()
    valid = (
        1 <= len(salt) <= _MAX_SALT
        and cost > 1
        and cost & (cost - 1) == 0
        and block_size >= 1
        and 1 <= parallel <= 16
        and 128 * block_size * (cost + parallel + 2) <= _MAX_SCRYPT_MEMORY
        and key_length == key_size
    )
    if not valid:
        raise KeyFormatError("unsupported or excessive scrypt parameters")
    return hashlib.scrypt(
        passphrase,
        salt=salt,
        n=cost,
        r=block_size,
        p=parallel,
        maxmem=_MAX_SCRYPT_MEMORY + 1024 * 1024,
        dklen=key_size,
    )


def decrypt_private_key_info(der: bytes, passphrase: bytes) -> bytes:
    """The PKCS#8 DER inside ``EncryptedPrivateKeyInfo`` ``der``; ``KeyFormatError`` with
    one message for a wrong passphrase and a corrupted file."""
    if not isinstance(passphrase, bytes):
        raise TypeError("the passphrase must be bytes")
    reader = decode(der).reader()
    algorithm = reader.read_sequence()
    ciphertext = reader.read_octet_string()
    reader.finish()
    if algorithm.read_oid() != _PBES2:
        raise KeyFormatError("unsupported key encryption: only PBES2 is supported")
    params = algorithm.read_sequence()
    algorithm.finish()
    kdf, scheme = params.read_sequence(), params.read_sequence()
    params.finish()
    cipher_oid = scheme.read_oid()
    if cipher_oid not in _AES_CBC:
        raise KeyFormatError(f"unsupported PBES2 cipher {short_oid(cipher_oid)}")
    key_size = _AES_CBC[cipher_oid]
    iv = scheme.read_octet_string()
    scheme.finish()
    if len(iv) != 16:
        raise KeyFormatError("AES-CBC IV must be 16 bytes")
    if not ciphertext or len(ciphertext) % 16:
        raise KeyFormatError("encrypted key length is not a whole number of AES blocks")
    kdf_oid = kdf.read_oid()
    kdf_params = kdf.read_sequence()
    kdf.finish()
    if kdf_oid == _PBKDF2:
        key = _derive_pbkdf2(kdf_params, passphrase, key_size)
    elif kdf_oid == _SCRYPT:
        key = _derive_scrypt(kdf_params, passphrase, key_size)
    else:
        raise KeyFormatError(f"unsupported PBES2 key derivation {short_oid(kdf_oid)}")
    padded = _aes_cbc(key, iv, ciphertext, encrypt=False)
    # A wrong passphrase shows up as bad padding or as garbage instead of a PKCS#8
    # structure; both get one message, which names neither the key nor the cause.
    try:
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        if decode(plain).tag != SEQUENCE:
            raise DERError("not a SEQUENCE")
    except (ValueError, DERError):
        raise KeyFormatError(_UNDECRYPTABLE) from None
    return plain
