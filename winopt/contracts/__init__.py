"""The contracts every part of winopt shares: file names and schemas, atomic durable
publish, and the locks that guard multi-step publishes. One copy, imported by the
optimizer, the handlers and the daemon alike."""

from winopt.contracts.locks import lock_for
from winopt.contracts.publish import publish_atomic, publish_bytes, publish_json, sha256_file, sweep_temps

__all__ = ["lock_for", "publish_atomic", "publish_bytes", "publish_json", "sha256_file", "sweep_temps"]
