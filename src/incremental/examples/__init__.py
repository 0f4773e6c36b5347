"""Examples that ship with the package: tool sets and the recorded conversations that use them.

``incremental.examples.app_builder`` is the app-builder demo: its tool set and two recorded turns.
"""
