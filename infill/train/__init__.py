"""Training the project's own small DiffusionGemma: corpus, tokenizer, examples, loop.

- `corpus`: source files already on the machine (stdlib + site-packages), deduplicated, split by package.
- `tokenizer`: byte-level BPE with the special and whitespace tokens `infill.prompt` expects.
- `examples`: fill-in-the-middle holes -> encoder prompts and canvases, batches, a streaming dataset.

Submodules are imported on use, so that `import infill.train` stays cheap.
"""
