"""Who must have signed: the verification policy of verify, verify-blob, pull, promote,
rollback, history and stages.

The fields mirror cosign's flags. Keyless rules need an identity (exact or regexp) AND an
issuer (exact or regexp): there is no "accept any signer". Regexps must match the WHOLE
value (``re.fullmatch``). ``keys`` lists public keys, any of which may match a key-signed
bundle. A policy file holds the same fields as JSON or YAML.

A policy that is given must be usable: every field is checked when the policy is built (no
empty, null, blank or mistyped value, regexps compile), and :meth:`VerificationPolicy.validate`
refuses a policy with no rule that can pass a signature. All refusals are UsageError (exit 2),
so a policy that lost its values (an empty variable, a templated file) never turns
verification off.
"""

from __future__ import annotations

import dataclasses
import os
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


_IDENTITY = ("certificate_identity", "certificate_identity_regexp")
_ISSUER = ("certificate_oidc_issuer", "certificate_oidc_issuer_regexp")
_REGEXPS = ("certificate_identity_regexp", "certificate_oidc_issuer_regexp")
_TEXT_FIELDS = (*_IDENTITY, *_ISSUER, "certificate_github_workflow_repository")
#: Field spellings a policy file accepts besides ``name`` and ``name-with-dashes``.
_ALIASES = {"key": "keys", "allowGlobals": "allow_globals"}
#: A pickle global as the scanner names it: dotted module path, then the name.
_GLOBAL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
#: Unrelated values no real identity or issuer rule accepts all of (see match_everything).
_PROBES = (
    "a",
    "0",
    "mallory@evil.example",
    "https://evil.example",
    "https://github.com/evil/evil/.github/workflows/evil.yml@refs/heads/evil",
    "spiffe://evil.example/ns/x",
)


def _label(field: str) -> str:
    """How a field is spelled for people: the flag without dashes, or the file key."""
    return {"keys": "key", "allow_globals": "allowGlobals", "policy_file": "policy"}.get(field, field.replace("_", "-"))


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{_label(field)} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise UsageError(f"{_label(field)} is empty: give a value or leave it out")
    if value != value.strip():
        raise UsageError(
            f"{_label(field)} {value!r} has leading or trailing whitespace (a YAML block scalar "
            "ends with a newline): remove it"
        )
    return value


def _path(field: str, value: object) -> Path:
    if isinstance(value, Path):
        return value
    return Path(_text(field, value))


def _items(field: str, value: object) -> list[object]:
    if isinstance(value, (str, bytes, Path)) or not isinstance(value, (list, tuple)):
        raise UsageError(f"{_label(field)} must be a list, not {type(value).__name__}")
    return list(value)


def _allowed_global(value: object) -> str:
    name = _text("allow_globals", value)
    if not _GLOBAL_NAME.fullmatch(name):
        raise UsageError(f"allowGlobals entry {name!r} is not MODULE.NAME (e.g. collections.OrderedDict)")
    return name


@dataclass(frozen=True)
class VerificationPolicy:
    """Rules a signature must satisfy, checked field by field when built (UsageError).

    ``allow_globals`` (pickle globals the scanner may accept, ``MODULE.NAME``) travels with
    the policy file but is not a signature rule.
    """

    certificate_identity: str | None = None
    certificate_identity_regexp: str | None = None
    certificate_oidc_issuer: str | None = None
    certificate_oidc_issuer_regexp: str | None = None
    certificate_github_workflow_repository: str | None = None
    keys: tuple[Path, ...] = ()
    trusted_root: Path | None = None
    staging: bool = False
    allow_globals: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in _TEXT_FIELDS:
            if getattr(self, field) is not None:
                _text(field, getattr(self, field))
        for field in _REGEXPS:
            pattern = getattr(self, field)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise UsageError(f"{_label(field)} {pattern!r} is not a valid regexp: {exc}") from None
        # Normalised in place (frozen): lists become tuples, strings paths.
        object.__setattr__(self, "keys", tuple(_path("keys", k) for k in _items("keys", self.keys)))
        if self.trusted_root is not None:
            object.__setattr__(self, "trusted_root", _path("trusted_root", self.trusted_root))
        if not isinstance(self.staging, bool):
            raise UsageError(f"staging must be true or false, not {self.staging!r}")
        globals_ = tuple(_allowed_global(g) for g in _items("allow_globals", self.allow_globals))
        object.__setattr__(self, "allow_globals", globals_)

    @property
    def requires_verification(self) -> bool:
        """Whether any signature field is set (``allow_globals`` is not one)."""
        return any(
            getattr(self, f.name) not in (None, (), False)
            for f in dataclasses.fields(self)
            if f.name != "allow_globals"
        )

    @property
    def has_certificate_rules(self) -> bool:
        """Whether keyless (certificate) rules are set."""
        return any(getattr(self, field) is not None for field in _TEXT_FIELDS)

    def validate(self) -> None:
        """UsageError unless the policy can pass a signature, and only a wanted one.

        Needs keys, or an identity AND an issuer; reads the key files and the trusted root
        so that a missing or wrong file is a usage error now, not "no signature" later.
        """
        for group in (_IDENTITY, _ISSUER):
            if all(getattr(self, field) is not None for field in group):
                raise UsageError(f"give either {_label(group[0])} or {_label(group[1])}, not both")
        if not self.has_certificate_rules and not self.keys:
            raise UsageError(
                "no verification policy: give --certificate-identity(-regexp) and "
                "--certificate-oidc-issuer(-regexp), or --key"
                + (" (allowGlobals alone is not a signature rule)" if self.allow_globals else "")
            )
        if self.has_certificate_rules and not all(
            any(getattr(self, field) is not None for field in group) for group in (_IDENTITY, _ISSUER)
        ):
            raise UsageError(
                "keyless verification needs both a certificate identity "
                "(--certificate-identity or --certificate-identity-regexp) and an issuer "
                "(--certificate-oidc-issuer or --certificate-oidc-issuer-regexp)"
            )
        if self.staging and self.trusted_root is not None:
            raise UsageError("give --trusted-root or --staging, not both")
        self._check_files()

    def _check_files(self) -> None:
        from ocimodel.signing.keys import load_public_key

        for key in self.keys:
            load_public_key(key)
        if self.trusted_root is not None:
            try:
                with open(self.trusted_root, "rb") as f:
                    f.read(1)
            except OSError as exc:
                raise UsageError(f"cannot read trusted root {self.trusted_root}: {exc.strerror}") from None

    def match_everything(self) -> list[str]:
        """The regexp rules that accept any value (``.*``, ``.+``, ``(.*)``, ``[\\s\\S]*``...).

        Judged by effect: a regexp that fully matches each of a few unrelated values (a
        letter, a digit, an email, URLs of other hosts and workflows) restricts nothing.
        """
        return [
            f"{_label(field)} {pattern!r}"
            for field in _REGEXPS
            if (pattern := getattr(self, field)) is not None
            and all(re.fullmatch(pattern, probe) for probe in _PROBES)
        ]

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
        cls,
        *,
        policy_file: str | Path | None = None,
        keys: Sequence[str | Path] = (),
        **flags: Any,
    ) -> VerificationPolicy:
        """The policy from CLI options: ``policy_file`` if given, overridden by the flags."""
        from_flags = cls(keys=tuple(_path("keys", k) for k in keys), **flags)
        if policy_file is None:
            return from_flags
        return cls.from_file(_path("policy_file", policy_file)).merged_with(from_flags)

    def merged_with(self, overrides: VerificationPolicy) -> VerificationPolicy:
        """This policy with every rule set in ``overrides`` replaced (flags over a file).

        An identity given either way (exact or regexp) replaces both identity fields; the
        same for the issuer: ``--certificate-identity-regexp`` overrides a file's exact
        identity instead of conflicting with it.
        """
        changes = {
            f.name: getattr(overrides, f.name)
            for f in dataclasses.fields(self)
            if getattr(overrides, f.name) not in (None, (), False)
        }
        for group in (_IDENTITY, _ISSUER):
            if any(field in changes for field in group):
                changes.update({field: getattr(overrides, field) for field in group})
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(
        cls, data: Mapping[Any, Any], *, base_dir: Path | None = None, source: str = "policy"
    ) -> VerificationPolicy:
        """A policy from a mapping of field names (``a_b`` or ``a-b``; ``key``, ``allowGlobals``).

        Unknown fields, a field given twice, null values, empty lists and wrong types are
        refused (UsageError prefixed with ``source``), so nothing in a file can silently
        weaken a policy. Relative paths are resolved against ``base_dir``.
        """
        values: dict[str, Any] = {}
        spelled: dict[str, Any] = {}
        try:
            for raw_key, value in data.items():
                name = _field_name(raw_key)
                if name in spelled:
                    raise UsageError(f"{spelled[name]!r} and {raw_key!r} are the same field")
                spelled[name] = raw_key
                if value is None:
                    raise UsageError(f"{raw_key} is null: give a value or remove it")
                if name in ("keys", "allow_globals"):
                    value = [value] if isinstance(value, str) and name == "keys" else _items(name, value)
                    if not value:
                        raise UsageError(f"{raw_key} is an empty list: give a value or remove it")
                values[name] = value

            def resolve(value: object, field: str) -> Path:
                path = _path(field, value)
                return base_dir / path if base_dir is not None and not path.is_absolute() else path

            if "keys" in values:
                values["keys"] = tuple(resolve(k, "keys") for k in values["keys"])
            if "trusted_root" in values:
                values["trusted_root"] = resolve(values["trusted_root"], "trusted_root")
            return cls(**values)
        except UsageError as exc:
            raise UsageError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: Path) -> VerificationPolicy:
        """A policy from a JSON or YAML file (see :mod:`ocimodel.signing.policyfile`)."""
        from ocimodel.signing.policyfile import read_policy_file

        data = read_policy_file(path)
        return cls.from_mapping(data, base_dir=Path(path).parent, source=f"policy file {path}")


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(VerificationPolicy))


def _field_name(raw_key: object) -> str:
    """The field a policy-file key names; UsageError (with a suggestion) for anything else."""
    if isinstance(raw_key, str):
        name = _ALIASES.get(raw_key, raw_key.replace("-", "_"))
        name = _ALIASES.get(name, name)
        if name in _FIELD_NAMES:
            return name
    import difflib

    known = sorted({_label(f) for f in _FIELD_NAMES} | set(_ALIASES))
    guess = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", str(raw_key)).lower().replace("_", "-")
    close = difflib.get_close_matches(guess, known, n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    raise UsageError(f"unknown policy field {raw_key!r}{hint}")


#: The environment variables of the policy options (see :func:`blank_policy_variables`).
POLICY_VARIABLES = tuple(
    "OCIMODEL_" + name.upper()
    for name in (*_TEXT_FIELDS, "key", "trusted_root", "staging", "policy")
)


def blank_policy_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The policy variables that are set to an empty (or blank) value.

    click treats such a variable as unset, so ``OCIMODEL_KEY=""`` would quietly mean "no
    policy" on pull; callers refuse them instead.
    """
    env = os.environ if environ is None else environ
    return [name for name in POLICY_VARIABLES if name in env and not env[name].strip()]
