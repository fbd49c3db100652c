"""The manifest language: models, YAML loading with positions, cross-file checks.

Import the submodules directly (`orchestrator.manifest.loader`, `.model`,
`.translate`): this package keeps its own import cheap for the CLI.
"""
