"""esipay v2: the path-based HTTP API (docs/esipay.md)."""
