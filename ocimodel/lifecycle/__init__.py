"""Stages: moving a model version to a named stage (a tag) with an auditable, hash-chained history.

A *stage* (``staging``, ``prod``...) is an ordinary tag. Promoting stores the exact manifest
bytes under the stage tag (same digest, no blob moves) and writes a *promotion record*: a
small referrer manifest naming the previous record of the stage, so the records form a hash
chain; the internal tag ``ocimodel.history.<stage>`` points at the newest. See docs/stages.md.

One concept per module: :mod:`.records` (names, the record and how it is stored and read),
:mod:`.actor` (who promoted), :mod:`.promote` (moving a stage, racing safely),
:mod:`.chain` (walking a stage's records), :mod:`.outside` (signed records the chain leaves
out), :mod:`.history`, :mod:`.stages`, :mod:`.rollback`, :mod:`.delete` (the verbs), and
:mod:`.recordtrust` (whether a record is signed under a policy). Everything talks to a
:class:`~ocimodel.storage.Target`. Nothing is imported here: import the module you need.
"""
