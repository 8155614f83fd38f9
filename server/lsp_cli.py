"""`infill lsp`: arguments and entry point (placeholder until the language server lands)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from infill.errors import InfillError

    raise InfillError("infill lsp is not built yet")
