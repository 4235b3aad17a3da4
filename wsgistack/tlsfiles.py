"""Loading PEM files into an ``ssl.SSLContext`` at start-up, each failure said in one line.

Shared by the clients' contexts (``tlsclient``: the Redis store, the
forwarder) and the server's ``--certfile``: OpenSSL
says "PEM lib" for a missing certificate, a bad key and a wrong password alike,
so the files are loaded one step at a time and each failure names its option.

    load_file(lambda path: context.load_verify_locations(cafile=path),
              path, "ca_certs", "no PEM certificate in it")
    load_cert_chain(context, "cert.pem", None, None, CertOptions("certfile", "keyfile", None))
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

__all__ = ["CertOptions", "load_cert_chain", "load_file"]


def load_file(load: Callable[[Any], Any], path: Any, where: str, not_pem: str) -> None:
    """``load(path)``, its failures said in one line: a missing or unreadable file, no PEM."""
    try:
        load(path)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file: {path!r}") from None
    except OSError as exc:  # (ssl.SSLError is one: the file was read, and held no PEM)
        reason = not_pem if isinstance(exc, ssl.SSLError) else exc.strerror
        raise ConfigError(f"{where}: {path!r}: {reason}") from None


@dataclasses.dataclass(frozen=True)
class CertOptions:
    """How the caller's options are named in messages (``where`` is put before each).

    ``password`` is None where there is no password option: an encrypted key
    is then refused, with a word on how to decrypt it.
    """

    where: str
    certfile: str
    keyfile: str
    password: str | None


def load_cert_chain(
    context: ssl.SSLContext,
    certfile: str,
    keyfile: str | None,
    password: Any,
    names: CertOptions,
) -> None:
    """Load a certificate and its key into ``context``; a ``ConfigError`` names what is wrong.

    The certificate is read alone first, so a file with no certificate is told
    apart from one with no key; the password is asked through a callback that
    notes it was asked (without one, OpenSSL would ask on the terminal).
    """
    prefix = f"{names.where}: " if names.where else ""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    load_file(
        lambda path: probe.load_verify_locations(cafile=path),
        certfile,
        f"{prefix}{names.certfile}",
        "no PEM certificate in it",
    )
    asked = []

    def ask() -> Any:
        asked.append(True)
        return password() if callable(password) else (password or b"")

    key_option = names.keyfile if keyfile else names.certfile
    key = keyfile or certfile
    try:
        context.load_cert_chain(certfile, keyfile or None, ask)
    except FileNotFoundError:
        raise ConfigError(f"{prefix}{key_option}: no such file: {key!r}") from None
    except ssl.SSLError as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            reason = f"not the key of the certificate in {certfile!r}"
        elif asked and names.password is None:
            reason = (
                "the key is encrypted, and there is no password option: decrypt it"
                " (openssl pkey -in KEY -out PLAIN) and keep the file readable by the server only"
            )
        elif asked and password is None:
            reason = f"the key is encrypted: give its password as {names.password}"
        elif asked:
            raise ConfigError(f"{prefix}{names.password}: does not decrypt {key!r}") from None
        else:
            reason = "no PEM private key in it"
            if not keyfile:
                reason += f" (give the key as {names.keyfile})"
        raise ConfigError(f"{prefix}{key_option}: {key!r}: {reason}") from None
    except OSError as exc:
        raise ConfigError(f"{prefix}{key_option}: {key!r}: {exc.strerror}") from None
