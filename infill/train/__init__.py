"""Training the project's own small DiffusionGemma: corpus, tokenizer, holes, bank, objective, loop.

- `corpus`: source files already on the machine (stdlib + site-packages), deduplicated, split by package.
- `tokenizer`: byte-level BPE with the special and whitespace tokens `infill.prompt` expects.
- `examples`: fill-in-the-middle holes -> encoder prompts and canvases (what editors ask for).
- `bank`: holes cut ahead of time on every core, served from the training device in canvas buckets.
- `objective`: uniform-state or mask diffusion losses on the lean model (`infill.models.lean`).
- `loop`: the training loop (time-based warmup-stable-decay, periodic exports); `device`: the GPU run.

Submodules are imported on use, so that `import infill.train` stays cheap.
"""
