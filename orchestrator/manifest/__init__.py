"""The manifest language: models, YAML loading with positions, cross-file checks.

Import the submodules directly (`orchestrator.manifest.loader`, `.model`):
this package keeps its own import cheap for the CLI. It knows no API field name:
`orchestrator.reconcile.translate` turns a manifest into requests.
"""
