"""Reconciliation: the ledger against the providers' own cost reports (docs/reconciliation.md)."""
