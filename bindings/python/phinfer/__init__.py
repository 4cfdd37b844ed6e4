"""phinfer: exact, fast inference of Microsoft's Phi-3 family (Phi-3/3.5/4-mini) on your own PC.

High level, shaped like Hugging Face transformers' ``pipeline("text-generation")``::

    import phinfer
    pipe = phinfer.pipeline("text-generation", model="Phi-3-mini-4k-instruct", weight_format="int4")
    out = pipe([{"role": "user", "content": "Why is the sky blue?"}], max_new_tokens=64,
               return_full_text=False, streamer=phinfer.TextStreamer(skip_prompt=True))
    print(out[0]["generated_text"])

Lower level: ``Model`` (``generate``, ``stream``, ``logits``), ``Tokenizer`` (``encode``, ``decode``,
``apply_chat_template``), ``Generator`` (token by token), ``GenerationConfig``.

Every computing call releases the GIL; Ctrl-C (KeyboardInterrupt) stops a running generation and leaves
the model ready for the next call; the library's errors raise ``phinfer.Error`` (a ``RuntimeError``)
with its message (naming the file, tensor or field).
"""

from ._phinfer import (  # noqa: F401
    Error,
    GenerationConfig,
    GenerationResult,
    Generator,
    Model,
    TextStream,
    Tokenizer,
)
from .pipelines import TextGenerationPipeline, TextStreamer, pipeline  # noqa: F401

# Show the public names as phinfer.X (in tracebacks and reprs), not phinfer._phinfer.X.
for _cls in (Error, GenerationConfig, GenerationResult, Generator, Model, TextStream, Tokenizer):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "Error",
    "GenerationConfig",
    "GenerationResult",
    "Generator",
    "Model",
    "TextGenerationPipeline",
    "TextStream",
    "TextStreamer",
    "Tokenizer",
    "pipeline",
]
