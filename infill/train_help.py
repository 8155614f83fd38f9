"""`infill train --help` without importing torch: the training command's help, generated from its parser.

`infill.train.cli` imports torch (its objectives), about 2 s of CPU before argparse runs; the help text of
that parser is kept here instead. tests/test_cli.py fails when it differs from the parser's;
`python -m infill.train_help` writes it again.
"""

from __future__ import annotations

WIDTH = 100  # the terminal width the text is wrapped for

TEXT = "usage: infill train [-h] [--config {cpu,gpu,smoke}] [--out OUT] [--run-dir RUN_DIR]\n                    [--objective {mask,uniform}] [--init-from bundled|DIR|none] [--device DEVICE]\n                    [--tokenizer TOKENIZER] [--roots [ROOTS ...]] [--time-budget TIME_BUDGET]\n                    [--tokens-per-batch TOKENS_PER_BATCH] [--max-steps MAX_STEPS]\n                    [--workers WORKERS] [--max-files MAX_FILES] [--lr LR]\n                    [--compile | --no-compile]\n\n`infill train --config cpu|gpu|smoke`: train the project's own model and export it.\n\noptions:\n  -h, --help            show this help message and exit\n  --config {cpu,gpu,smoke}\n                        named configuration (cpu: ~1 h on 2 cores; gpu: ~7 min on one H100/H200;\n                        smoke: seconds)\n  --out OUT             where to export the weights (default: gpu /work/wt-latency/infill/weights,\n                        the bundled model; cpu RUN_DIR/weights, so that a CPU run never replaces\n                        GPU-trained weights; smoke: none)\n  --run-dir RUN_DIR     history, report and plots (default runs/CONFIG)\n  --objective {mask,uniform}\n                        noise the model learns to remove (default: the configuration's, see\n                        README)\n  --init-from bundled|DIR|none\n                        start from these weights (fresh optimizer, short warmup); 'none': random\n                        init\n  --device DEVICE\n  --tokenizer TOKENIZER\n                        directory with tokenizer.json\n  --roots [ROOTS ...]   source roots for the corpus (default: stdlib and site-packages of this\n                        Python)\n  --time-budget TIME_BUDGET\n                        seconds of training (overrides the config)\n  --tokens-per-batch TOKENS_PER_BATCH\n                        prompt + canvas slots per step\n  --max-steps MAX_STEPS\n  --workers WORKERS     processes cutting holes into the bank\n  --max-files MAX_FILES\n                        use at most this many corpus files\n  --lr LR\n  --compile, --no-compile\n                        torch.compile the training step (default: the configuration's; gpu\n                        compiles)\n"


def current() -> str:
    """The help the training parser prints now, at WIDTH columns (imports infill.train.cli, hence torch)."""
    import argparse
    import os

    from .train.cli import __doc__ as doc
    from .train.cli import add_arguments

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        parser = argparse.ArgumentParser(prog="infill train", description=doc)
        add_arguments(parser)
        return parser.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


if __name__ == "__main__":
    from pathlib import Path

    path = Path(__file__)
    source = path.read_text()
    start = source.index("TEXT = ")
    end = source.index("\n\n\ndef current")
    path.write_text(source[:start] + f"TEXT = {current()!r}" + source[end:])
    print(f"wrote {path}")
