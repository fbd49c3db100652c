"""The reliability suite ("a bad day loses nothing"): see docs/reliability.md."""
