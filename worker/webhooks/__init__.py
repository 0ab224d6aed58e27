"""Webhooks as hints: a signed delivery from a tracker asks for an immediate run of its
integration; the run reads the tracker as always (docs/webhooks.md)."""
