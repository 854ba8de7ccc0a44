"""The Chroma store in parts: one module per record family, the change log and the leases apart."""
