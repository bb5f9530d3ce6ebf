"""A local, offline stand-in for a Sigstore deployment, for tests.

It runs, on one HTTP server bound to 127.0.0.1 (a free port, a daemon thread):

* a Fulcio CA: ``POST /api/v2/signingCert`` checks the bearer token (signed by this
  stand-in's OIDC key, ``aud: sigstore``, inside its time window) and the CSR's proof of
  possession, then issues a leaf certificate shaped like Fulcio's (empty subject, critical
  SAN, KeyUsage, EKU codeSigning, SKI/AKI, issuer extensions, GitHub workflow extensions,
  and an embedded SCT signed by a CT key over the precertificate TBS);
* a Rekor v1 log: ``POST /api/v1/log/entries`` for ``dsse`` and ``hashedrekord`` entries,
  answering with a signed entry timestamp (over RFC 8785 JSON), an inclusion proof and a
  signed-note checkpoint. Simplification: every entry is leaf 0 of its own one-leaf tree;
* a GitHub Actions OIDC token endpoint: ``GET /github/token`` (see :meth:`github_env`).

:meth:`SigstoreStandin.write_files` writes a trusted root JSON listing the CA, the CT key and
the Rekor key, and a ClientTrustConfig JSON pointing at the services, so the real
sigstore-python ``Signer`` and ``Verifier`` run unchanged against it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import struct
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
_SIGSTORE_OID = "1.3.6.1.4.1.57264.1."
_SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_EPOCH = "2020-01-01T00:00:00Z"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962 key id: sha256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki_der(key)).digest()


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    return b"\x0c" + _der_length(len(raw)) + raw


def _ext(suffix: int, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{_SIGSTORE_OID}{suffix}"), value)


def _key_usage(*granted: str) -> x509.KeyUsage:
    """A KeyUsage extension granting only the named usages."""
    usages = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{u: u in granted for u in usages})


def _tls_vector(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


class SigstoreStandin:
    """Keys, certificate authority, log and token endpoints of a local Sigstore."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.oidc_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = self._make_ca()
        self._github_tickets: dict[str, dict[str, Any]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.trusted_root_path: Path | None = None
        self.trust_config_path: Path | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> SigstoreStandin:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()

    def write_files(self, directory: Path) -> None:
        """Write ``trusted_root.json`` and ``trust_config.json`` into ``directory``."""
        root = self.trusted_root()
        self.trusted_root_path = directory / "trusted_root.json"
        self.trusted_root_path.write_text(json.dumps(root, indent=1))
        config = {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": root,
            "signingConfig": self.signing_config(),
        }
        self.trust_config_path = directory / "trust_config.json"
        self.trust_config_path.write_text(json.dumps(config, indent=1))

    # -- trust material --------------------------------------------------------------

    def _log_instance(self, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
        return {
            "baseUrl": self.url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(_spki_der(key.public_key())),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": _EPOCH},
            },
            "logId": {"keyId": _b64(_key_id(key.public_key()))},
        }

    def trusted_root(self) -> dict[str, Any]:
        """The trusted root (v0.1) naming this stand-in's CA, CT log and Rekor log."""
        ca_der = self.ca_cert.public_bytes(serialization.Encoding.DER)
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [self._log_instance(self.rekor_key)],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "ocimodel-test", "commonName": "standin"},
                    "uri": self.url,
                    "certChain": {"certificates": [{"rawBytes": _b64(ca_der)}]},
                    "validFor": {"start": _EPOCH},
                }
            ],
            "ctlogs": [self._log_instance(self.ct_key)],
            "timestampAuthorities": [],
        }

    def signing_config(self) -> dict[str, Any]:
        """A signing config (v0.2) pointing Fulcio, Rekor v1 and OIDC at this stand-in."""

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": {"start": _EPOCH},
                "operator": "ocimodel-test",
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service(self.url)],
            "oidcUrls": [service(self.url)],
            "rekorTlogUrls": [service(self.url)],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        }

    # -- identity tokens -------------------------------------------------------------

    def mint_token(self, identity: str, issuer: str, *, lifetime: int = 300, **claims: Any) -> str:
        """A JWT for ``identity`` from ``issuer``, signed by the stand-in's OIDC key.

        An identity with ``@`` and no ``://`` also becomes the ``email`` claim; extra
        ``claims`` (GitHub's ``repository``, ``job_workflow_ref``...) are added as given.
        """
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": issuer,
            "aud": "sigstore",
            "sub": identity,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
        }
        if "@" in identity and "://" not in identity:
            body.update(email=identity, email_verified=True)
        body.update(claims)
        return jwt.encode(body, self.oidc_key, algorithm="ES256")

    def github_claims(self, repo: str, workflow_ref: str) -> dict[str, Any]:
        """Claims of a GitHub Actions token for ``repo`` running ``workflow_ref``.

        ``workflow_ref`` is like ``owner/repo/.github/workflows/release.yml@refs/tags/v1``.
        """
        ref = workflow_ref.partition("@")[2] or "refs/heads/main"
        return {
            "repository": repo,
            "repository_owner": repo.partition("/")[0],
            "workflow_ref": workflow_ref,
            "job_workflow_ref": workflow_ref,
            "ref": ref,
            "sha": "0" * 40,
            "event_name": "push",
            "workflow": "release",
        }

    def github_env(self, repo: str, workflow_ref: str) -> dict[str, str]:
        """Environment variables of a GitHub Actions job allowed ``id-token: write``.

        The token endpoint hands out a token for ``repo``/``workflow_ref`` to whoever
        presents the request token, as GitHub's does.
        """
        request_token = secrets.token_urlsafe(16)
        self._github_tickets[request_token] = self.github_claims(repo, workflow_ref)
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}/github/token",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": request_token,
        }

    def _github_token(self, authorization: str, audience: str) -> str | None:
        scheme, _, request_token = authorization.partition(" ")
        claims = self._github_tickets.get(request_token)
        if scheme.lower() != "bearer" or claims is None:
            return None
        subject = f"repo:{claims['repository']}:ref:{claims['ref']}"
        return self.mint_token(subject, GITHUB_ISSUER, aud=audience, **claims)

    # -- Fulcio ----------------------------------------------------------------------

    def _make_ca(self) -> x509.Certificate:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocimodel-test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "standin"),
            ]
        )
        now = dt.datetime.now(dt.timezone.utc)
        public = self.ca_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_key_usage("key_cert_sign", "crl_sign"), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    def issue_certificate(
        self, csr: x509.CertificateSigningRequest, claims: dict[str, Any]
    ) -> x509.Certificate:
        """A Fulcio-shaped leaf for the CSR's key and the token's claims, with an SCT."""
        issuer = claims["iss"]
        if "job_workflow_ref" in claims:
            san: x509.GeneralName = x509.UniformResourceIdentifier(
                f"https://github.com/{claims['job_workflow_ref']}"
            )
        elif "email" in claims:
            if not claims.get("email_verified"):
                raise ValueError("email not verified")
            san = x509.RFC822Name(claims["email"])
        else:
            san = x509.UniformResourceIdentifier(claims["sub"])
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        public = csr.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=5))
            .not_valid_after(now + dt.timedelta(minutes=10))
            .add_extension(_key_usage("digital_signature"), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(_ext(1, issuer.encode()), critical=False)
            .add_extension(_ext(8, _der_utf8(issuer)), critical=False)
        )
        if "job_workflow_ref" in claims:
            for suffix, claim in (
                (2, "event_name"),
                (3, "sha"),
                (4, "workflow"),
                (5, "repository"),
                (6, "ref"),
            ):
                builder = builder.add_extension(
                    _ext(suffix, str(claims[claim]).encode()), critical=False
                )
            repo_uri = f"https://github.com/{claims['repository']}"
            builder = builder.add_extension(_ext(12, _der_utf8(repo_uri)), critical=False)
        precert = builder.sign(self.ca_key, hashes.SHA256())
        sct = self._sct(precert.tbs_certificate_bytes)
        return builder.add_extension(
            x509.UnrecognizedExtension(_SCT_OID, b"\x04" + _der_length(len(sct)) + sct),
            critical=False,
        ).sign(self.ca_key, hashes.SHA256())

    def _sct(self, precert_tbs: bytes) -> bytes:
        """A TLS-encoded SCT list (RFC 6962) with one SCT over ``precert_tbs``."""
        timestamp = int(time.time() * 1000)
        issuer_key_hash = _key_id(self.ca_key.public_key())
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp, 1)
            + issuer_key_hash
            + len(precert_tbs).to_bytes(3, "big")
            + precert_tbs
            + _tls_vector(b"")
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            b"\x00"
            + _key_id(self.ct_key.public_key())
            + struct.pack("!Q", timestamp)
            + _tls_vector(b"")
            + bytes([4, 3])  # sha256, ecdsa
            + _tls_vector(signature)
        )
        return _tls_vector(_tls_vector(sct))

    def _signing_cert(self, authorization: str, body: dict[str, Any]) -> dict[str, Any]:
        token = authorization.removeprefix("Bearer ").strip()
        claims = jwt.decode(
            token, self.oidc_key.public_key(), algorithms=["ES256"], audience="sigstore"
        )
        csr = x509.load_pem_x509_csr(base64.b64decode(body["certificateSigningRequest"]))
        if not csr.is_signature_valid:
            raise ValueError("CSR signature invalid")
        leaf = self.issue_certificate(csr, claims)
        chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, self.ca_cert)]
        return {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}}

    # -- Rekor v1 --------------------------------------------------------------------

    def _canonical_entry(self, proposed: dict[str, Any]) -> dict[str, Any]:
        """The entry Rekor stores for a proposed ``dsse`` or ``hashedrekord`` entry."""
        if proposed["kind"] == "hashedrekord":
            return proposed
        if proposed["kind"] != "dsse":
            raise ValueError(f"unsupported kind {proposed['kind']}")
        content = proposed["spec"]["proposedContent"]
        envelope = json.loads(content["envelope"])
        payload = base64.b64decode(envelope["payload"])
        return {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(content["envelope"].encode()).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [
                    {"signature": sig["sig"], "verifier": verifier}
                    for sig, verifier in zip(envelope["signatures"], content["verifiers"])
                ],
            },
        }

    def _log_entry(self, proposed: dict[str, Any]) -> dict[str, Any]:
        body = rfc8785.dumps(self._canonical_entry(proposed))
        body_b64 = _b64(body)
        log_id = _key_id(self.rekor_key.public_key())
        integrated_time = int(time.time())
        promise = {
            "body": body_b64,
            "integratedTime": integrated_time,
            "logID": log_id.hex(),
            "logIndex": 0,
        }
        signed_entry_timestamp = self.rekor_key.sign(
            rfc8785.dumps(promise), ec.ECDSA(hashes.SHA256())
        )
        root_hash = hashlib.sha256(b"\x00" + body).digest()
        note = f"ocimodel-standin-rekor - 1\n1\n{_b64(root_hash)}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 ocimodel-standin-rekor {_b64(log_id[:4] + note_sig)}\n"
        return {
            hashlib.sha256(body).hexdigest(): {
                "body": body_b64,
                "integratedTime": integrated_time,
                "logID": log_id.hex(),
                "logIndex": 0,
                "verification": {
                    "signedEntryTimestamp": _b64(signed_entry_timestamp),
                    "inclusionProof": {
                        "checkpoint": checkpoint,
                        "hashes": [],
                        "logIndex": 0,
                        "rootHash": root_hash.hex(),
                        "treeSize": 1,
                    },
                },
            }
        }

    # -- HTTP ------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Stay quiet."""

            def _reply(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                try:
                    if self.path == "/api/v2/signingCert":
                        auth = self.headers.get("Authorization", "")
                        self._reply(200, standin._signing_cert(auth, body))
                    elif self.path == "/api/v1/log/entries":
                        self._reply(201, standin._log_entry(body))
                    else:
                        self._reply(404, {"message": "not found"})
                except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
                    self._reply(400, {"message": str(exc)})

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                audience = dict(p.partition("=")[::2] for p in query.split("&")).get("audience", "")
                token = None
                if path == "/github/token":
                    token = standin._github_token(self.headers.get("Authorization", ""), audience)
                if token is None:
                    self._reply(403, {"message": "no token for this request"})
                else:
                    self._reply(200, {"value": token})

        return Handler
