"""The registry: an HTTP implementation of the storage interface (:mod:`ocimodel.storage`).

``client`` speaks the OCI distribution API, endpoint by endpoint; ``transport`` sends (auth,
redirects, retries, errors, mirrors), with ``tls`` and ``timeouts`` beneath it; ``blobs``
reads bodies and ``uploads`` writes them; ``auth`` answers challenges (Basic, Bearer tokens);
``credentials`` reads docker's config and credential helpers; ``retry`` decides when to try
again; ``mirrors`` parses pull-through cache settings; ``connection`` holds every connection
option. Nothing is imported here: ``import ocimodel.registry.client`` and friends directly.
"""
