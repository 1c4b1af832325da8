"""Shared-memory segments (docs/LAYOUT.md is the contract for every language).

- ``layout``: the single table of offsets, sizes, flags and counters.
- ``_seqlock``: the C extension doing fenced whole-slot writes and reads, the liveness probe and
  the futex wait / wake.
- ``writer.SegmentWriter``: build ``/ldc-<group>`` (replacing a predecessor's file), add / remove markets, publish.
- ``files``: /dev/shm files only the feeders' user owns, and the OFD locks of LAYOUT.md section 10.
- ``reader.Reader`` (also ``ldc.Reader``): attach read-only, validate, take consistent copies.
- ``segment``: header validation shared by both sides.
"""
