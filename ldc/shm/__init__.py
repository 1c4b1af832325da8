"""Shared-memory segments: layout, writer, reader."""
