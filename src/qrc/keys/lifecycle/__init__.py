"""Key lifecycle: create, rotate, change state, destroy, run what is due, rotate the root KEK.

- :mod:`.keys` — :class:`KeyLifecycle`, the lifecycle calls the service exposes;
- :mod:`.rotation` — adding a version (by hand and by schedule);
- :mod:`.destruction` — crypto-shredding and freeing the erased storage;
- :mod:`.transition` — one checked state change;
- :mod:`.scheduler` — due rotations, expiries and destructions, once across nodes;
- :mod:`.kek_rotation` — rewrapping every stored key under a new root KEK.
"""
