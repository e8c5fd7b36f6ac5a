"""kadapter: K-Adapter (Wang et al., Findings of ACL 2021) — a frozen encoder with knowledge adapters."""
__version__ = "0.1.0"
