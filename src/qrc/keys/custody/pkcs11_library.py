"""The PKCS#11 libraries this process has loaded, shared by every custody that uses them.

One :class:`Pkcs11Library` per module path: its lock serialises calls (the library is
initialised without OS locking), it keeps one logged-in session per token, and it
finalises and re-initialises the library once per outage (SoftHSM2 only notices token
changes then).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

import pkcs11
from pkcs11 import exceptions as p11e

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as _P11Lib

__all__ = ["DEFAULT_MODULE", "Pkcs11Library", "library", "reinitialize_library"]

logger = logging.getLogger(__name__)

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class Pkcs11Library:
    """One loaded PKCS#11 library, shared by every custody using it in this process.

    PKCS#11 login state is per application and token: a second ``C_Login`` fails and one
    ``C_Logout`` logs out every session. So custodies on the same token share one logged-in
    session, counted by references, and the library is re-initialised only once per outage
    (``generation`` tells a custody its handles predate a re-initialisation).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.generation = 0
        self._lib: _P11Lib | None = None
        self._pid = os.getpid()
        self._sessions: dict[str, pkcs11.Session] = {}
        self._users: dict[str, int] = {}

    def _handle(self) -> _P11Lib:
        if self._pid != os.getpid():
            # A forked child must not use the parent's sessions (PKCS#11 §5.1).
            self._pid = os.getpid()
            self.reset(self.generation)
        if self._lib is None:
            self._lib = pkcs11.lib(self.path)
        elif not self._lib.initialized:
            self._lib.initialize()
        return self._lib

    def session(self, token_label: str, pin: str) -> pkcs11.Session:
        session = self._sessions.get(token_label)
        if session is None:
            token = self._handle().get_token(token_label=token_label)
            try:
                session = token.open(user_pin=pin)
            except p11e.UserAlreadyLoggedIn:
                # Logged in through a session we no longer track; login is per token.
                session = token.open()
            self._sessions[token_label] = session
        return session

    def rw_session(self, token_label: str) -> pkcs11.Session:
        """A read-write session on a token already logged in via :meth:`session`."""
        token = self._handle().get_token(token_label=token_label)
        return token.open(rw=True)

    def acquire(self, token_label: str) -> None:
        self._users[token_label] = self._users.get(token_label, 0) + 1

    def release(self, token_label: str) -> None:
        left = self._users.get(token_label, 0) - 1
        if left > 0:
            self._users[token_label] = left
            return
        self._users.pop(token_label, None)
        session = self._sessions.pop(token_label, None)
        if session is not None:
            try:
                session.close()
            except p11e.PKCS11Error:
                logger.debug("closing the PKCS#11 session failed", exc_info=True)

    def reset(self, seen_generation: int) -> None:
        """Finalise and re-initialise, unless someone did since ``seen_generation``."""
        if seen_generation != self.generation:
            return
        self.generation += 1
        self._sessions.clear()  # C_Finalize closes them all
        if self._lib is None:
            return
        for step in (self._lib.finalize, self._lib.initialize):
            try:
                step()
            except p11e.PKCS11Error:
                # Initialisation fails while the token store is gone; the next call retries.
                logger.debug("PKCS#11 %s failed", step.__name__, exc_info=True)


_LIBRARIES: dict[str, Pkcs11Library] = {}
_LIBRARIES_LOCK = threading.Lock()


def library(path: str) -> Pkcs11Library:
    with _LIBRARIES_LOCK:
        library = _LIBRARIES.get(path)
        if library is None:
            library = _LIBRARIES[path] = Pkcs11Library(path)
        return library


def reinitialize_library(module: str = DEFAULT_MODULE) -> None:
    """Make every custody on ``module`` reconnect (e.g. after the token configuration changed).

    SoftHSM2 reads ``SOFTHSM2_CONF`` and its token directory only at initialisation.
    """
    shared = library(module)
    with shared.lock:
        shared.reset(shared.generation)
