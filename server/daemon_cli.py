"""`infill daemon`: arguments and entry point (placeholder until the daemon lands)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from infill.errors import InfillError

    raise InfillError("infill daemon is not built yet")
