"""Push and pull: the model's files to and from a storage :class:`~ocimodel.storage.Target`.

:mod:`.push` and :mod:`.pull` own the use-cases (pull takes the destination lock once);
:mod:`.upload` and :mod:`.download` move the layers (streamed, hashed, verified); :mod:`.files`
collects a model's files; :mod:`.destination`, :mod:`.dirfd` and :mod:`.installed` are the
rules for DEST (no symlink followed, a state file for init containers); :mod:`.verify` the
VerifyingWriter every downloaded byte goes through; :mod:`.cache` and :mod:`.digestcache` the
local caches; :mod:`.allocator` glibc malloc tuning; :mod:`.observer` progress events;
:mod:`.parallel` the worker pool; :mod:`.gitinfo` the code a model was trained from. Nothing is
imported here: import the module you need.
"""
