"""The inventory as a CycloneDX 1.6 CBOM (cryptography bill of materials).

Mapping (``docs/monitoring.md`` has the table): each algorithm in use is a
``cryptographic-asset`` of asset type ``algorithm`` with its primitive, parameter set and NIST
quantum security level (0 for classical ones); each managed key is ``related-crypto-material``
pointing at its algorithm; each certificate (the service's own and those found by a scan) is a
``certificate`` pointing at its signature algorithm; keys found by a scan are
``related-crypto-material``; TLS, when handshakes were seen, is a ``protocol``. Facts without
a CycloneDX field (status, custody, counts) are ``qrc:``-named properties.
"""

from __future__ import annotations

import re

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.bom_ref import BomRef
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.crypto import (
    AlgorithmProperties,
    CertificateProperties,
    CryptoAssetType,
    CryptoFunction,
    CryptoPrimitive,
    CryptoProperties,
    ProtocolProperties,
    ProtocolPropertiesCipherSuite,
    ProtocolPropertiesType,
    RelatedCryptoMaterialProperties,
    RelatedCryptoMaterialState,
    RelatedCryptoMaterialType,
)
from cyclonedx.output.json import JsonV1Dot6

from qrc import __version__
from qrc.crypto.registry import Kind
from qrc.monitor.endpoints import EndpointProbe
from qrc.monitor.inventory import AlgorithmUse, Inventory, KeyAsset
from qrc.monitor.scan import FoundAsset

__all__ = ["to_bom", "to_cbom_json"]

_FUNCTIONS = {
    Kind.KEM: (CryptoPrimitive.KEM, [CryptoFunction.KEYGEN, CryptoFunction.ENCAPSULATE,
                                     CryptoFunction.DECAPSULATE]),
    Kind.SIGNATURE: (CryptoPrimitive.SIGNATURE, [CryptoFunction.KEYGEN, CryptoFunction.SIGN,
                                                 CryptoFunction.VERIFY]),
    Kind.AEAD: (CryptoPrimitive.AE, [CryptoFunction.ENCRYPT, CryptoFunction.DECRYPT]),
}  # fmt: skip
_STATES = {
    "pre_active": RelatedCryptoMaterialState.PRE_ACTIVATION,
    "active": RelatedCryptoMaterialState.ACTIVE,
    "suspended": RelatedCryptoMaterialState.SUSPENDED,
    "deactivated": RelatedCryptoMaterialState.DEACTIVATED,
    "compromised": RelatedCryptoMaterialState.COMPROMISED,
    "destroyed": RelatedCryptoMaterialState.DESTROYED,
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


def _ref(*parts: str) -> str:
    return ":".join(_UNSAFE.sub("_", p) for p in parts)


def _alg_ref(algorithm: str) -> str:
    return _ref("algorithm", algorithm)


def _props(**values: object) -> list[Property]:
    return [Property(name=f"qrc:{k}", value=str(v)) for k, v in values.items() if v is not None]


def _classical_primitive(algorithm: str) -> CryptoPrimitive:
    name = algorithm.lower()
    if name.startswith(("ecdsa", "ed25519", "ed448", "dsa")) or "with" in name:
        return CryptoPrimitive.SIGNATURE
    if name.startswith(("x25519", "x448", "ecdh")):
        return CryptoPrimitive.KEY_AGREE
    if name.startswith("rsa"):
        return CryptoPrimitive.PKE
    return CryptoPrimitive.UNKNOWN


def _algorithm(use: AlgorithmUse) -> Component:
    info = use.info
    if info is not None:
        primitive, functions = _FUNCTIONS[info.kind]
        level = info.nist_level if info.quantum_safe and info.nist_level else 0
        properties = AlgorithmProperties(
            primitive=primitive,
            parameter_set_identifier=info.id,
            crypto_functions=functions,
            nist_quantum_security_level=level,
        )
        oid = info.oid
    else:
        properties = AlgorithmProperties(
            primitive=_classical_primitive(use.id), nist_quantum_security_level=0
        )
        oid = None
    return Component(
        name=use.id,
        type=ComponentType.CRYPTOGRAPHIC_ASSET,
        bom_ref=_alg_ref(use.id),
        description=info.standard if info else "not in the qrc registry",
        crypto_properties=CryptoProperties(
            asset_type=CryptoAssetType.ALGORITHM, algorithm_properties=properties, oid=oid
        ),
        properties=_props(
            status=use.as_dict()["status"],
            quantum_safe=str(use.quantum_safe).lower(),
            keys=use.keys,
            certificates=use.certificates,
            encrypted_objects=use.objects,
            found=use.found,
        ),
    )


def _key(key: KeyAsset) -> Component:
    material = (
        RelatedCryptoMaterialType.SECRET_KEY
        if key.purpose == "key_wrapping" or key.algorithm.startswith(("AES", "ChaCha"))
        else RelatedCryptoMaterialType.PRIVATE_KEY
    )
    return Component(
        name=key.name,
        type=ComponentType.CRYPTOGRAPHIC_ASSET,
        bom_ref=_ref("key", key.id),
        crypto_properties=CryptoProperties(
            asset_type=CryptoAssetType.RELATED_CRYPTO_MATERIAL,
            related_crypto_material_properties=RelatedCryptoMaterialProperties(
                type=material,
                id=key.id,
                state=_STATES.get(key.state),
                algorithm_ref=BomRef(_alg_ref(key.algorithm)),
                creation_date=key.created_at,
                expiration_date=key.expires_at,
            ),
        ),
        properties=_props(
            purpose=key.purpose,
            version=key.version,
            custody=key.custody,
            algorithm_status=key.algorithm_status,
            age_days=key.age_days,
            last_activity=key.last_activity_at.isoformat() if key.last_activity_at else None,
            system_key=str(key.system).lower(),
        ),
    )


def _found(asset: FoundAsset, index: int, origin: str) -> Component:
    ref = _ref(origin, asset.kind, asset.fingerprint or str(index))
    common = _props(path=asset.path, quantum_safe=str(asset.quantum_safe).lower(),
                    key_algorithm=asset.key_algorithm, detail=asset.detail)  # fmt: skip
    if asset.kind == "certificate":
        return Component(
            name=asset.subject or asset.path,
            type=ComponentType.CRYPTOGRAPHIC_ASSET,
            bom_ref=ref,
            crypto_properties=CryptoProperties(
                asset_type=CryptoAssetType.CERTIFICATE,
                certificate_properties=CertificateProperties(
                    subject_name=asset.subject,
                    issuer_name=asset.issuer,
                    not_valid_before=asset.not_before,
                    not_valid_after=asset.not_after,
                    signature_algorithm_ref=BomRef(_alg_ref(asset.algorithm)),
                    certificate_format="X.509",
                ),
            ),
            properties=common,
        )
    material = {
        "private-key": RelatedCryptoMaterialType.PRIVATE_KEY,
        "public-key": RelatedCryptoMaterialType.PUBLIC_KEY,
    }.get(asset.kind, RelatedCryptoMaterialType.UNKNOWN)
    return Component(
        name=f"{asset.kind} {asset.algorithm} in {asset.path}",
        type=ComponentType.CRYPTOGRAPHIC_ASSET,
        bom_ref=ref,
        crypto_properties=CryptoProperties(
            asset_type=CryptoAssetType.RELATED_CRYPTO_MATERIAL,
            related_crypto_material_properties=RelatedCryptoMaterialProperties(
                type=material, algorithm_ref=BomRef(_alg_ref(asset.algorithm)), format="PEM"
            ),
        ),
        properties=common,
    )


def _tls(inventory: Inventory) -> Component | None:
    seen = inventory.handshakes
    if not seen.completed and not seen.classical_events and not seen.tls_mode:
        return None
    suites = [
        ProtocolPropertiesCipherSuite(name=f"{group} / {signature}", identifiers=[group, cert])
        for (group, signature, cert) in sorted(seen.completed)
    ]
    return Component(
        name="TLS 1.3 listener",
        type=ComponentType.CRYPTOGRAPHIC_ASSET,
        bom_ref="protocol:tls",
        crypto_properties=CryptoProperties(
            asset_type=CryptoAssetType.PROTOCOL,
            protocol_properties=ProtocolProperties(
                type=ProtocolPropertiesType.TLS, version="1.3", cipher_suites=suites
            ),
        ),
        properties=_props(
            tls_mode=seen.tls_mode,
            classical_share=seen.classical_share,
            audited_classical_handshakes=seen.classical_events,
            audited_refused_handshakes=seen.refused_events,
        ),
    )


def _endpoint(probe: EndpointProbe) -> Component:
    suites = []
    if probe.group is not None:
        name = f"{probe.cipher} / {probe.group}"
        suites.append(ProtocolPropertiesCipherSuite(name=name, identifiers=[probe.group]))
    return Component(
        name=f"TLS endpoint {probe.endpoint}",
        type=ComponentType.CRYPTOGRAPHIC_ASSET,
        bom_ref=_ref("endpoint", probe.endpoint),
        crypto_properties=CryptoProperties(
            asset_type=CryptoAssetType.PROTOCOL,
            protocol_properties=ProtocolProperties(
                type=ProtocolPropertiesType.TLS,
                version=(probe.protocol or "").removeprefix("TLSv") or None,
                cipher_suites=suites,
            ),
        ),
        properties=_props(
            endpoint=probe.endpoint,
            post_quantum=str(probe.post_quantum).lower(),
            error=probe.error,
        ),
    )


def to_bom(inventory: Inventory) -> Bom:
    """The inventory as a CycloneDX BOM of cryptographic assets."""
    bom = Bom()
    bom.metadata.timestamp = inventory.generated_at
    bom.metadata.component = root = Component(
        name="qrc", version=__version__, type=ComponentType.APPLICATION, bom_ref="qrc-service"
    )
    bom.metadata.properties.update(_props(custody=inventory.custody))
    components = [_algorithm(use) for use in inventory.algorithms()]
    components += [_key(key) for key in inventory.keys]
    components += [_found(c, i, "tls") for i, c in enumerate(inventory.certificates)]
    components += [_found(a, i, "scan") for i, a in enumerate(inventory.found)]
    components += [_endpoint(probe) for probe in inventory.endpoints]
    tls = _tls(inventory)
    if tls is not None:
        components.append(tls)
    unique = _unique(components)
    for component in unique:
        bom.components.add(component)
    bom.register_dependency(root, unique)
    return bom


def _unique(components: list[Component]) -> list[Component]:
    """Drop repeated bom-refs (the same certificate in two scanned bundles)."""
    seen: set[str | None] = set()
    out = []
    for component in components:
        if component.bom_ref.value not in seen:
            seen.add(component.bom_ref.value)
            out.append(component)
    return out


def to_cbom_json(inventory: Inventory) -> str:
    """The inventory as CycloneDX 1.6 JSON."""
    return JsonV1Dot6(to_bom(inventory)).output_as_string(indent=2)
