"""Issuing, verifying, revoking and exporting certificates (rendering is in `certificates/`)."""
