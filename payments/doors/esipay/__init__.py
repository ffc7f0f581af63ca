"""esipay v2: the path-based HTTP API of shared/contracts/esipay.md."""
