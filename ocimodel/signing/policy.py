"""Who must have signed: the verification policy shared by verify, verify-blob, pull, promote.

The fields mirror cosign's flags. Keyless rules need an identity (exact or regexp) AND an
issuer (exact or regexp): there is no "accept any signer". Regexps must match the WHOLE
value (``re.fullmatch``). ``keys`` lists public keys, any of which may match a key-signed
bundle. A policy file holds the same fields as JSON or YAML (YAML needs PyYAML).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocimodel.errors import UsageError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.verify.policy import VerificationPolicy as SigstorePolicy

_ISSUER_OID = "1.3.6.1.4.1.57264.1.1"
_ISSUER_V2_OID = "1.3.6.1.4.1.57264.1.8"
_GITHUB_REPOSITORY_OID = "1.3.6.1.4.1.57264.1.5"
_OTHERNAME_OID = "1.3.6.1.4.1.57264.1.7"


def certificate_identities(cert: Certificate) -> list[str]:
    """The signer identities in a Fulcio certificate's SAN (emails, URIs, Sigstore names)."""
    from cryptography import x509
    from cryptography.hazmat import asn1

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.RFC822Name) + san.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id.dotted_string == _OTHERNAME_OID:
            try:
                names.append(asn1.decode_der(str, other.value))
            except ValueError:
                continue  # not a UTF8String: not an identity Fulcio writes
    return names


def _extension_bytes(cert: Certificate, oid: str) -> bytes | None:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    return ext.value.value  # type: ignore[attr-defined, no-any-return]


def certificate_issuer(cert: Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded (extension .1.8, else the legacy .1.1)."""
    from cryptography.hazmat import asn1

    v2 = _extension_bytes(cert, _ISSUER_V2_OID)
    if v2 is not None:
        return asn1.decode_der(str, v2)
    v1 = _extension_bytes(cert, _ISSUER_OID)
    return v1.decode() if v1 is not None else None


def certificate_github_repository(cert: Certificate) -> str | None:
    """The GitHub workflow repository (extension .1.5) of a certificate, if any."""
    raw = _extension_bytes(cert, _GITHUB_REPOSITORY_OID)
    return raw.decode() if raw is not None else None


class CertificateRule:
    """A sigstore policy: one certificate field equals ``exact`` or fully matches ``pattern``.

    Implements sigstore's ``VerificationPolicy`` protocol (``verify(cert)`` raising
    sigstore's ``VerificationError``, whose message says which check failed).
    """

    def __init__(
        self,
        what: str,
        values: Callable[[Certificate], list[str]],
        *,
        exact: str | None = None,
        pattern: str | None = None,
    ) -> None:
        self._what = what
        self._values = values
        self._exact = exact
        self._pattern = re.compile(pattern) if pattern is not None else None

    def _matches(self, value: str) -> bool:
        if self._exact is not None and value != self._exact:
            return False
        return self._pattern is None or self._pattern.fullmatch(value) is not None

    def verify(self, cert: Certificate) -> None:
        """Raise sigstore's VerificationError unless a value of the field matches."""
        from sigstore.errors import VerificationError

        values = self._values(cert)
        if not any(self._matches(v) for v in values):
            wanted = self._exact if self._pattern is None else f"/{self._pattern.pattern}/"
            raise VerificationError(
                f"wrong {self._what}: certificate has {', '.join(values) or 'none'}, "
                f"policy requires {wanted}"
            )


def _optional(value: str | None) -> list[str]:
    return [value] if value is not None else []


@dataclass(frozen=True)
class VerificationPolicy:
    """Rules a signature must satisfy. Empty fields are not checked."""

    certificate_identity: str | None = None
    certificate_identity_regexp: str | None = None
    certificate_oidc_issuer: str | None = None
    certificate_oidc_issuer_regexp: str | None = None
    certificate_github_workflow_repository: str | None = None
    keys: tuple[Path, ...] = ()
    trusted_root: Path | None = None
    staging: bool = False

    @property
    def requires_verification(self) -> bool:
        """Whether any rule is set (pull and promote verify only then)."""
        return any(getattr(self, f.name) not in (None, (), False) for f in dataclasses.fields(self))

    @property
    def has_certificate_rules(self) -> bool:
        """Whether keyless (certificate) rules are set."""
        return any(
            (
                self.certificate_identity,
                self.certificate_identity_regexp,
                self.certificate_oidc_issuer,
                self.certificate_oidc_issuer_regexp,
                self.certificate_github_workflow_repository,
            )
        )

    def validate(self) -> None:
        """UsageError if the policy cannot safely verify anything."""
        identity = (self.certificate_identity, self.certificate_identity_regexp)
        issuer = (self.certificate_oidc_issuer, self.certificate_oidc_issuer_regexp)
        if all(identity) or all(issuer):
            raise UsageError("give either an exact value or a regexp, not both")
        if not self.has_certificate_rules and not self.keys:
            raise UsageError(
                "no verification policy: give --certificate-identity(-regexp) and "
                "--certificate-oidc-issuer(-regexp), or --key"
            )
        if self.has_certificate_rules and not (any(identity) and any(issuer)):
            raise UsageError(
                "keyless verification needs both a certificate identity "
                "(--certificate-identity or --certificate-identity-regexp) and an issuer "
                "(--certificate-oidc-issuer or --certificate-oidc-issuer-regexp)"
            )
        for pattern in (self.certificate_identity_regexp, self.certificate_oidc_issuer_regexp):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise UsageError(f"invalid regexp {pattern!r}: {exc}") from None

    def certificate_policy(self) -> SigstorePolicy:
        """The sigstore policy enforcing the certificate rules (call :meth:`validate` first)."""
        from sigstore.verify.policy import AllOf

        rules = [
            CertificateRule(
                "identity",
                certificate_identities,
                exact=self.certificate_identity,
                pattern=self.certificate_identity_regexp,
            ),
            CertificateRule(
                "issuer",
                lambda c: _optional(certificate_issuer(c)),
                exact=self.certificate_oidc_issuer,
                pattern=self.certificate_oidc_issuer_regexp,
            ),
        ]
        if self.certificate_github_workflow_repository:
            rules.append(
                CertificateRule(
                    "GitHub workflow repository",
                    lambda c: _optional(certificate_github_repository(c)),
                    exact=self.certificate_github_workflow_repository,
                )
            )
        return AllOf(rules)  # type: ignore[arg-type]

    @classmethod
    def from_options(
        cls, *, policy_file: Path | None = None, keys: Sequence[Path] = (), **flags: Any
    ) -> VerificationPolicy:
        """The policy from CLI options: ``policy_file`` if given, overridden by the flags."""
        from_flags = cls(keys=tuple(Path(k) for k in keys), **flags)
        if policy_file is None:
            return from_flags
        return cls.from_file(policy_file).merged_with(from_flags)

    def merged_with(self, overrides: VerificationPolicy) -> VerificationPolicy:
        """This policy with every field set in ``overrides`` replaced (flags over a file)."""
        changes = {
            f.name: getattr(overrides, f.name)
            for f in dataclasses.fields(self)
            if getattr(overrides, f.name) not in (None, (), False)
        }
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base_dir: Path | None = None
    ) -> VerificationPolicy:
        """A policy from a mapping whose keys are field names (``-`` or ``_``; ``key`` too).

        Unknown keys are refused, so a typo cannot silently weaken a policy. Relative paths
        are resolved against ``base_dir``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for raw_key, value in data.items():
            name = str(raw_key).replace("-", "_")
            name = "keys" if name == "key" else name
            if name not in names:
                raise UsageError(f"unknown policy field {raw_key!r}")
            values[name] = value

        def path(value: Any) -> Path:
            p = Path(str(value))
            return base_dir / p if base_dir is not None and not p.is_absolute() else p

        if "keys" in values:
            keys = values["keys"]
            values["keys"] = tuple(path(k) for k in ([keys] if isinstance(keys, str) else keys))
        if values.get("trusted_root") is not None:
            values["trusted_root"] = path(values["trusted_root"])
        for name in names - {"keys", "trusted_root", "staging"}:
            if values.get(name) is not None and not isinstance(values[name], str):
                raise UsageError(f"policy field {name} must be a string")
        if not isinstance(values.get("staging", False), bool):
            raise UsageError("policy field staging must be true or false")
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path) -> VerificationPolicy:
        """A policy from a JSON or YAML file (YAML needs PyYAML; JSON always works)."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read policy file {path}: {exc.strerror}") from None
        data: Any
        try:
            data = json.loads(text)
        except ValueError:
            data = _load_yaml(text, path)
        if not isinstance(data, dict):
            raise UsageError(f"policy file {path} must hold a mapping of policy fields")
        return cls.from_mapping(data, base_dir=Path(path).parent)


def _load_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise UsageError(
            f"policy file {path} is not JSON, and reading YAML needs PyYAML (pip install pyyaml)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"policy file {path} is neither JSON nor valid YAML: {exc}") from None
