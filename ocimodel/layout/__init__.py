"""OCI image layouts as a storage :class:`~ocimodel.storage.Target`: a directory (``oci:PATH``)
or one tar file of it (``oci-archive:FILE``), in the image-spec's image-layout format.

One concept per module: :mod:`.names` parses ``oci:``/``oci-archive:`` references,
:mod:`.index` reads and amends ``index.json`` (tags as ``org.opencontainers.image.ref.name``),
:mod:`.files` is the directory store (blobs opened without following links, written to a temp
name and renamed, ``index.json`` replaced atomically under a lock), :mod:`.archive` reads a
tar in place and writes one, :mod:`.target` is the Target over either. See docs/format.md,
"OCI image layouts".
"""
