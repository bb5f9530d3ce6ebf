"""Signing and verifying model manifests with Sigstore (keyless) or a local key.

The modules, one concept each: :mod:`.statement` (the signed in-toto statement),
:mod:`.keys` (key pairs and key-mode bundles), :mod:`.trust` (which Sigstore instance is
trusted), :mod:`.keyless` (identity tokens and keyless signing), :mod:`.policy` (who must
have signed) and :mod:`.verify` (checking a bundle against a policy). ``sigstore`` is only
imported inside functions, so importing this package stays fast.
"""
