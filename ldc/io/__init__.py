"""Network I/O: websocket connections and REST snapshots."""
