"""The read fast path: after one value, the next ones under the same DEK skip parsing and
the cache lookup (``DataEncryptor.decrypt``) and most of the base64 (``TextReader``). These
tests prime it with a good value first, then attack: every damaged or moved value must still
fail opaquely, and every key change, expiry and state check must still be seen."""

from __future__ import annotations

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.data.cache import CacheLimits
from qrc.data.format import parse, to_text
from qrc.data.sdk import DataEncryptor
from qrc.keys.errors import OperationNotPermitted
from qrc.keys.service import KeyService
from tests.data.conftest import ACTOR, destroy_now


def _primed(sdk: DataEncryptor, key: str = "sym") -> tuple[bytes, bytes]:
    """Two values under one DEK; the first already read (the fast path is armed)."""
    first = sdk.encrypt(key, b"first", context=b"row/1")
    second = sdk.encrypt(key, b"second value", context=b"row/2")
    assert parse(first).wrapped_key == parse(second).wrapped_key
    assert sdk.decrypt(first, context=b"row/1") == b"first"
    return first, second


@pytest.mark.parametrize("key", ["sym", "pq"])
def test_damaged_values_fail_after_a_good_one(sdk: DataEncryptor, key: str) -> None:
    _, value = _primed(sdk, key)
    hits = sdk.cache_stats().hits
    assert sdk.decrypt(value, context=b"row/2") == b"second value"
    assert sdk.cache_stats().hits == hits + 1  # served by the fast path
    with pytest.raises(DecryptionError):
        sdk.decrypt(value, context=b"row/1")  # moved to another row
    # Every byte but those inside the wrapped DEK, of which every 16th (a changed wrapped
    # DEK is another header: the full path, a call to the key service each).
    wrapped = parse(value).wrapped_key
    start = value.index(wrapped)
    inside = range(start, start + len(wrapped))
    for i in [i for i in range(len(value)) if i not in inside or (i - start) % 16 == 0]:
        changed = bytearray(value)
        changed[i] ^= 0x01
        with pytest.raises(DecryptionError):
            sdk.decrypt(bytes(changed), context=b"row/2")
    for cut in range(len(value) - 40, len(value)):  # into the nonce, ciphertext and tag
        with pytest.raises(DecryptionError):
            sdk.decrypt(value[:cut], context=b"row/2")
    with pytest.raises(DecryptionError):
        sdk.decrypt(value + b"\x00", context=b"row/2")
    assert sdk.decrypt(value, context=b"row/2") == b"second value"


@pytest.mark.parametrize("key", ["sym", "pq"])
def test_damaged_text_fails_after_a_good_one(sdk: DataEncryptor, key: str) -> None:
    first, second = _primed(sdk, key)
    reader = sdk.text_reader()
    assert reader.decrypt(to_text(first), b"row/1") == b"first"
    text = to_text(second)
    hits = sdk.cache_stats().hits
    assert reader.decrypt(text, b"row/2") == b"second value"
    assert sdk.cache_stats().hits == hits + 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # Every character of the header's text around the wrapped DEK and of the rest (nonce,
    # ciphertext, tag; the padding aside), and every 16th within the wrapped DEK.
    wrapped = parse(second).wrapped_key
    first_char = len("qrcd1:") + second.index(wrapped) * 4 // 3 + 4
    last_char = len("qrcd1:") + (second.index(wrapped) + len(wrapped)) * 4 // 3 - 4
    for i in range(len("qrcd1:"), len(text) - 2):
        if first_char <= i < last_char and i % 16:
            continue
        swapped = alphabet[(alphabet.index(text[i]) + 1) % 64]
        with pytest.raises(DecryptionError):
            reader.decrypt(text[:i] + swapped + text[i + 1 :], b"row/2")
    # What lenient base64 would skip or accept: a stray character, lost padding, more data.
    for bad in (
        text[:-8] + "*" + text[-8:],
        text[:-8] + "\n" + text[-8:],
        text.rstrip("=") if text.endswith("=") else text[:-1],
        text + "AAAA",
        text[:-4],
    ):
        with pytest.raises(DecryptionError):
            reader.decrypt(bad, b"row/2")
    with pytest.raises(DecryptionError):
        reader.decrypt(text, b"row/1")
    assert reader.decrypt(text, b"row/2") == b"second value"


def test_a_header_that_differs_only_after_the_shared_text_is_checked(
    sdk: DataEncryptor,
) -> None:
    """The reader compares the header's last bytes too (those not in whole base64 groups):
    a value under another DEK that shares the text prefix takes the full path."""
    first, second = _primed(sdk)
    reader = sdk.text_reader()
    reader.decrypt(to_text(first), b"row/1")
    header_size = len(second) - len(parse(second).body)
    if header_size % 3 == 0:
        pytest.skip("this header fills whole base64 groups")
    changed = bytearray(second)
    changed[header_size - 1] ^= 0x01  # last byte of the wrapped DEK: not in the prefix text
    text = to_text(bytes(changed))
    assert text.startswith(reader._memo[0])  # type: ignore[index]
    with pytest.raises(DecryptionError):
        reader.decrypt(text, b"row/2")


@pytest.mark.parametrize("change", ["revoke", "suspend", "destroy", "min_version"])
def test_key_changes_stop_the_fast_path_at_once(service: KeyService, change: str) -> None:
    sdk = DataEncryptor.local(service)
    first, second = _primed(sdk)
    reader = sdk.text_reader()
    assert reader.decrypt(to_text(first), b"row/1") == b"first"
    if change == "revoke":
        service.keys.revoke("sym", "key_compromise", actor=ACTOR)
    elif change == "suspend":
        service.keys.suspend("sym", actor=ACTOR)
    elif change == "destroy":
        destroy_now(service, "sym")
    else:
        service.keys.rotate("sym", actor=ACTOR)
        service.keys.set_min_decryption_version("sym", 2, actor=ACTOR)
    with pytest.raises(OperationNotPermitted):
        sdk.decrypt(second, context=b"row/2")
    with pytest.raises(OperationNotPermitted):
        reader.decrypt(to_text(second), b"row/2")
    sdk.close()


def test_state_checks_and_expiry_still_happen(service: KeyService) -> None:
    """Another process revokes the key (no observer): the next check, due after
    ``check_interval``, refuses; and a DEK past ``max_age`` is unwrapped again."""
    now = [0.0]
    source = DataEncryptor.local(service).source
    sdk = DataEncryptor(source, cache=CacheLimits(check_interval=5, max_age=100))
    sdk.cache._clock = lambda: now[0]
    first, second = _primed(sdk)
    reader = sdk.text_reader()
    reader.decrypt(to_text(first), b"row/1")
    now[0] = 50.0
    reader.decrypt(to_text(second), b"row/2")  # a check was due: done, key still fine
    now[0] = 101.0  # past max_age: unwrapped again (a miss), not served from memory
    misses = sdk.cache_stats().misses
    assert reader.decrypt(to_text(second), b"row/2") == b"second value"
    assert sdk.decrypt(second, context=b"row/2") == b"second value"
    assert sdk.cache_stats().misses == misses + 1
    service.keys.revoke("sym", "key_compromise", actor=ACTOR)  # sdk does not observe
    assert sdk.decrypt(second, context=b"row/2") == b"second value"  # within the interval
    now[0] = 110.0
    with pytest.raises(OperationNotPermitted):
        reader.decrypt(to_text(second), b"row/2")
    with pytest.raises(OperationNotPermitted):
        sdk.decrypt(second, context=b"row/2")
    sdk.close()


def test_values_under_several_deks_interleaved(service: KeyService) -> None:
    sdk = DataEncryptor.local(service, cache=CacheLimits(max_messages=2))
    values = [sdk.encrypt("sym", b"v%d" % i, context=b"%d" % i) for i in range(9)]
    assert len({parse(v).wrapped_key for v in values}) == 5
    reader = sdk.text_reader()
    order = [0, 8, 1, 7, 2, 6, 3, 5, 4, 4, 0]
    for i in order:
        assert reader.decrypt(to_text(values[i]), b"%d" % i) == b"v%d" % i
        assert sdk.decrypt(values[i], context=b"%d" % i) == b"v%d" % i
    sdk.close()
    with pytest.raises(RuntimeError):
        sdk.decrypt(values[0], context=b"0")
    with pytest.raises(RuntimeError):
        reader.decrypt(to_text(values[0]), b"0")


def test_no_fast_path_without_the_cache(service: KeyService) -> None:
    sdk = DataEncryptor.local(service, cache=CacheLimits(max_entries=0))
    value = sdk.encrypt("sym", b"x", context=b"c")
    reader = sdk.text_reader()
    for _ in range(2):
        assert sdk.decrypt(value, context=b"c") == b"x"
        assert reader.decrypt(to_text(value), b"c") == b"x"
    assert sdk._last is None and reader._memo is None
    sdk.close()
