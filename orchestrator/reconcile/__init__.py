"""Reconcile: plan (pure) and execute (through the client, recorded in the store)."""
