"""The app-builder demo: a tool set that edits an app's files, and a two-turn conversation that uses it.

``RECORDINGS`` are the two recorded turns (package data, raw SSE with timing comments): an 8-tool turn
that sets up a habit tracker on Vite's react-ts starter, and the model's summary after the results.
``incremental replay --demo`` and ``incremental serve --demo`` play them.

The tool set is ``incremental.examples.app_builder.tools`` (it needs the ``worker`` extra; this module
imports nothing beyond the standard library, so the recordings can be found with the parser alone).
Runs name it ``TOOLSET`` (``INCREMENTAL_TOOLSETS=app=incremental.examples.app_builder.tools:registry``
gives it to a worker by name)::

    from incremental import Runner
    from incremental.examples import app_builder
    from incremental.examples.app_builder.tools import registry, seed_vite_starter

    async with Runner(tools={app_builder.TOOLSET: registry}) as runner:   # workers that serve it
        run = await runner.start(messages, model=..., max_tokens=..., toolset=app_builder.TOOLSET,
                                 workspace=folder_seeded_with_seed_vite_starter)
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RECORDINGS", "TOOLSET"]

_HERE = Path(__file__).resolve().parent

RECORDINGS: tuple[Path, Path] = (_HERE / "app_builder_8_tools.sse", _HERE / "app_builder_turn2.sse")
TOOLSET = "app"
