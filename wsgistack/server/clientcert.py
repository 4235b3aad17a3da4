"""Who a verified client certificate names: mod_ssl's ``SSL_CLIENT_*`` environ keys.

With ``--cert-reqs required`` (or ``optional``) the handshake only proves that
the client's certificate chains to ``--ca-certs``; these keys tell the app
*which* client it is, so services behind mutual TLS can authorise one another
by name.  The names and values are Apache mod_ssl's (``SSLOptions +StdEnvVars
+ExportCertData``), which mod_wsgi hands to WSGI apps and which Django packages
for client certificates look for:

    SSL_CLIENT_VERIFY    SUCCESS; NONE when the client showed no certificate
    SSL_CLIENT_S_DN      the subject, an RFC 4514 string: CN=api,O=Example,C=DE
    SSL_CLIENT_I_DN      the issuer, the same way
    SSL_CLIENT_M_SERIAL  the serial number in hex, as ``openssl x509 -serial``
    SSL_CLIENT_V_START   notBefore, as OpenSSL prints it: Jun  1 12:00:00 2030 GMT
    SSL_CLIENT_V_END     notAfter, the same way
    SSL_CLIENT_CERT      the certificate, PEM
    SSL_CLIENT_V_REMAIN  the days left, as mod_ssl counts them (see ``_days_left``)
    SSL_CLIENT_S_DN_CN   one key per attribute of the subject, by mod_ssl's names
                         (C ST L O OU CN T I G S D UID Email); a second value of
                         the same attribute is ``_1``, a third ``_2``: OU, OU_1
    SSL_CLIENT_I_DN_CN   the issuer's, the same way
    SSL_CLIENT_SAN_DNS_0 the subjectAltName entries, numbered from 0 by kind:
                         DNS and Email as mod_ssl names them; URI (a SPIFFE ID)
                         and IP (written as REMOTE_ADDR is) have no mod_ssl name

Rules.  The keys are computed once per TLS connection, after its handshake,
and every request on it shares them (``TLSConnection`` adds them to its copy of
the listener's environ base); plain connections never come here.  Without a
certificate only ``SSL_CLIENT_VERIFY`` is set (``NONE``), as in mod_ssl.  A DN
is written as ``openssl x509 -nameopt RFC2253`` and nginx's ``$ssl_client_s_dn``
write it, so an app reads the same string here as behind nginx: the most
specific RDN first, ``+`` joining a multi-valued RDN, OpenSSL's short names, and
RFC 4514 2.4's escapes, with every byte of a value's UTF-8 outside printable
ASCII as ``\\XX`` (the string is ASCII, whatever the certificate held).  An
attribute's own key holds its text as mod_ssl's does, UTF-8 with control
characters as ``\\XX``, carried as PEP 3333 carries bytes: decoded latin-1, so
``value.encode("latin-1").decode("utf-8")`` gives the text back (as under
mod_wsgi).  ``SSL_CLIENT_V_REMAIN`` is counted at the handshake, not at each
request as mod_ssl does: on a connection kept past midnight it may be a day high.

    base = {**listener_base, **client_cert_keys(tls_sock, time.time())}
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
from typing import Any

__all__ = ["client_cert_keys", "rfc4514"]

#: RFC 4514 2.4: these are escaped with a backslash wherever they appear.
_SPECIAL = frozenset(b',+"\\<>;')
_NUMBER_SIGN, _SPACE = 0x23, 0x20

#: A DN as ``SSLSocket.getpeercert()`` gives one: RDNs, each of (type, value) pairs.
Name = tuple[tuple[tuple[str, str], ...], ...]

#: mod_ssl's names for the attributes it gives a key each, by getpeercert()'s long name.
_FIELDS = {
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "commonName": "CN",
    "title": "T",
    "initials": "I",
    "givenName": "G",
    "surname": "S",
    "description": "D",
    "userId": "UID",
    "emailAddress": "Email",
}
#: ``SSL_CLIENT_SAN_<kind>_n`` by getpeercert()'s kind.  mod_ssl names DNS and
#: Email only (and otherName msUPN, which getpeercert() cannot read).
_SAN_KINDS = {"DNS": "DNS", "email": "Email", "URI": "URI", "IP Address": "IP"}
_DAY = 86400


def client_cert_keys(sock: ssl.SSLSocket, now: float) -> dict[str, str]:
    """The ``SSL_CLIENT_*`` keys for a TLS connection whose handshake is done at ``now``."""
    der = sock.getpeercert(binary_form=True)
    cert: dict[str, Any] | None = sock.getpeercert()
    if der is None or not cert:  # none shown (optional), or none asked for (cert_reqs none)
        return {"SSL_CLIENT_VERIFY": "NONE"}
    # An unverified certificate never gets here: --cert-reqs optional and
    # required both end the handshake when the chain does not verify.
    subject, issuer = cert.get("subject", ()), cert.get("issuer", ())
    return {
        "SSL_CLIENT_VERIFY": "SUCCESS",
        "SSL_CLIENT_S_DN": rfc4514(subject),
        "SSL_CLIENT_I_DN": rfc4514(issuer),
        "SSL_CLIENT_M_SERIAL": cert["serialNumber"],
        "SSL_CLIENT_V_START": cert["notBefore"],
        "SSL_CLIENT_V_END": cert["notAfter"],
        "SSL_CLIENT_V_REMAIN": _days_left(cert["notAfter"], now),
        "SSL_CLIENT_CERT": ssl.DER_cert_to_PEM_cert(der),
        **dn_fields("SSL_CLIENT_S_DN_", subject),
        **dn_fields("SSL_CLIENT_I_DN_", issuer),
        **san_keys("SSL_CLIENT_SAN_", cert.get("subjectAltName", ())),
    }


def dn_fields(prefix: str, name: Name) -> dict[str, str]:
    """mod_ssl's key per attribute, in the certificate's order: ``CN``, then ``CN_1``..."""
    keys: dict[str, str] = {}
    seen: dict[str, int] = {}
    for rdn in name:
        for kind, value in rdn:
            tag = _FIELDS.get(kind)
            if tag is None:
                continue  # an attribute mod_ssl gives no key of its own: in the DN only
            count = seen[tag] = seen.get(tag, -1) + 1
            keys[f"{prefix}{tag}_{count}" if count else prefix + tag] = _native(value)
    return keys


def san_keys(prefix: str, names: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The subjectAltName entries as ``prefix + DNS_0``..., numbered from 0 by kind."""
    keys: dict[str, str] = {}
    seen: dict[str, int] = {}
    for kind, value in names:
        tag = _SAN_KINDS.get(kind)
        if tag is None:
            continue  # othername, DirName, Registered ID: no key
        if tag == "IP":
            value = _address(value)
        count = seen[tag] = seen.get(tag, -1) + 1
        keys[f"{prefix}{tag}_{count}"] = _native(value)
    return keys


def _address(value: str) -> str:
    """An IP SAN as REMOTE_ADDR writes an address (getpeercert() spells IPv6 out in full)."""
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:  # getpeercert()'s "<invalid>" for a malformed one: as it is
        return value


def _native(value: str) -> str:
    """An attribute's text as mod_ssl writes it, as a PEP 3333 native string.

    OpenSSL's ``ASN1_STRFLGS_ESC_CTRL`` (C0 controls and DEL as ``\\XX``),
    then the UTF-8 bytes decoded latin-1, as mod_wsgi hands them on.
    """
    if value.isascii() and value.isprintable():
        return value  # nearly every value
    return "".join(
        f"\\{byte:02X}" if byte < 0x20 or byte == 0x7F else chr(byte)
        for byte in value.encode("utf-8")
    )


def _days_left(not_after: str, now: float) -> str:
    """mod_ssl's ``SSL_CLIENT_V_REMAIN``: whole days from ``now`` to notAfter, at least 0.

    mod_ssl counts to a day past notAfter (a certificate ending in 36 hours
    has 2 days left there, 1 in nginx's ``$ssl_client_v_remain``): mod_ssl's, here.
    """
    end = ssl.cert_time_to_seconds(not_after) + _DAY
    return str(max(0, (end - int(now)) // _DAY))


def rfc4514(name: Name) -> str:
    """``name`` as an RFC 4514 string, byte for byte as ``openssl -nameopt RFC2253``.

    getpeercert() lists the RDNs (and the values of each) in the order the
    certificate holds them, country first; RFC 4514 2.1 writes them reversed.
    """
    return ",".join(
        "+".join(f"{_short_name(kind)}={_escaped(value, kind)}" for kind, value in reversed(rdn))
        for rdn in reversed(name)
    )


@functools.lru_cache(maxsize=64)
def _short_name(kind: str) -> str:
    """OpenSSL's short name for an attribute type (``commonName`` -> ``CN``).

    getpeercert() gives long names, or the dotted OID of a type OpenSSL does
    not know, which RFC 4514 3 keeps as it is.
    """
    try:
        return ssl._ASN1Object.fromname(kind).shortname
    except ValueError:  # "unknown object": a dotted OID
        return kind


def _escaped(value: str, kind: str) -> str:
    """An attribute value as RFC 4514 2.4 writes it (a dotted type's as ``#`` and hex)."""
    data = value.encode("utf-8")
    if kind[:1].isdigit():
        # RFC 4514 2.4: a value of a type without a name is its BER in hex.
        # getpeercert() keeps the text only, not the string type the
        # certificate used, so it is written as a UTF8String (tag 12).
        return "#" + _ber_utf8(data).hex()
    if data.isascii() and data.isalnum():
        return value  # nearly every value: nothing to look at
    last = len(data) - 1
    out: list[str] = []
    for at, byte in enumerate(data):
        if byte < 0x20 or byte >= 0x7F:
            out.append(f"\\{byte:02X}")
        elif (
            byte in _SPECIAL
            or (byte == _NUMBER_SIGN and at == 0)
            or (byte == _SPACE and at in (0, last))
        ):
            out.append("\\" + chr(byte))
        else:
            out.append(chr(byte))
    return "".join(out)


def _ber_utf8(data: bytes) -> bytes:
    """``data`` as a DER UTF8String: tag, definite length, content."""
    size = len(data)
    if size < 0x80:
        return bytes((12, size)) + data
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((12, 0x80 | len(length))) + length + data
