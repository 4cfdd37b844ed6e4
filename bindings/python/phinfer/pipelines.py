"""The Hugging Face-style front: pipeline("text-generation"), TextGenerationPipeline and TextStreamer."""

import sys

from ._phinfer import Model, Tokenizer


class TextStreamer:
    """Prints generated text to stdout as soon as it is final, like transformers' ``TextStreamer``.

    ``TextStreamer(tokenizer=None, skip_prompt=False)``: the tokenizer argument is accepted for
    compatibility with ``TextStreamer(tokenizer, skip_prompt=True)`` and not needed (the model decodes).
    With ``skip_prompt=False`` (transformers' default) the prompt's text is printed first.
    Subclass and override ``on_finalized_text(text, stream_end=False)`` to send the text elsewhere.
    """

    def __init__(self, tokenizer=None, skip_prompt=False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs

    def __call__(self, text):
        self.on_finalized_text(text)

    def end(self):
        """Called once when the generation has finished."""
        self.on_finalized_text("", stream_end=True)

    def on_finalized_text(self, text, stream_end=False):
        print(text, flush=True, end="" if not stream_end else None, file=sys.stdout)


def _is_chat(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], dict)


class TextGenerationPipeline:
    """``pipe(inputs, **generate_kwargs)`` -> ``[{"generated_text": ...}]``, as transformers' pipeline.

    inputs: a prompt text, a chat (a list of ``{"role", "content"}`` dicts; the model's chat template
    is applied with the generation prompt), or a list of those (then one result list per input).

    Keyword arguments: ``return_full_text`` (default True, as transformers), ``streamer`` (e.g.
    ``TextStreamer(skip_prompt=True)``, or any callable receiving text), ``max_new_tokens``,
    ``temperature``, ``do_sample``, ``top_k``, ``top_p``, ``repetition_penalty``, ``seed``, ... (every
    ``GenerationConfig`` field).

    What ``generated_text`` holds, as in transformers:
      * text input, ``return_full_text=True``: the prompt followed by the generated text;
      * text input, ``return_full_text=False``: the generated text;
      * chat input, ``return_full_text=True``: the chat (a new list of message dicts) with the reply
        appended as ``{"role": "assistant", "content": <generated text>}``;
      * chat input, ``return_full_text=False``: the generated text.
    The generated text leaves out special tokens (such as ``<|end|>``).
    """

    task = "text-generation"

    def __init__(self, model, tokenizer=None):
        self.model = model
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else model.tokenizer

    def __call__(self, text_inputs, return_full_text=True, streamer=None, **generate_kwargs):
        if isinstance(text_inputs, str) or _is_chat(text_inputs):
            return self._one(text_inputs, return_full_text, streamer, generate_kwargs)
        if isinstance(text_inputs, (list, tuple)):
            return [self._one(x, return_full_text, streamer, generate_kwargs) for x in text_inputs]
        raise TypeError("text-generation input must be a str, a chat (list of message dicts) or a list of those, "
                        f"found {type(text_inputs).__name__}")

    def _one(self, prompt, return_full_text, streamer, generate_kwargs):
        generate_kwargs = dict(generate_kwargs)
        generate_kwargs.setdefault("skip_prompt", getattr(streamer, "skip_prompt", True))
        if _is_chat(prompt):
            messages = [dict(m) for m in prompt]
            result = self.model.generate(messages, streamer=streamer, return_full_text=False, **generate_kwargs)
            if return_full_text:
                return [{"generated_text": messages + [{"role": "assistant", "content": result.text}]}]
            return [{"generated_text": result.text}]
        if not isinstance(prompt, str):
            raise TypeError(f"text-generation input must be a str or a chat, found {type(prompt).__name__}")
        result = self.model.generate(prompt, streamer=streamer, return_full_text=return_full_text, **generate_kwargs)
        return [{"generated_text": result.text}]


def pipeline(task="text-generation", model=None, tokenizer=None, weight_format=None, device="cpu", **model_kwargs):
    """A ``TextGenerationPipeline`` over ``model``: a path (Hugging Face checkpoint folder or phinfer
    model file) or a loaded ``phinfer.Model``.

    ``weight_format`` (fp32, fp16, bf16, int8, int4) converts a Hugging Face folder once and caches it
    (see ``Model``); ``device`` is ``cpu`` or ``auto``; other keyword arguments go to ``Model``
    (``threads``, ``kv_cache``, ``sliding_window``, ``cache_dir``, ``group_size``, ``symmetric``).
    ``tokenizer`` is accepted for compatibility (the model's own tokenizer is used when it is not a
    ``phinfer.Tokenizer``).
    """
    if task != "text-generation":
        raise ValueError(f"unsupported task '{task}': phinfer provides 'text-generation'")
    if model is None:
        raise ValueError("pipeline needs model=PATH (a Hugging Face checkpoint folder or a phinfer model file)")
    if not isinstance(model, Model):
        model = Model(model, weight_format=weight_format, device=device, **model_kwargs)
    elif weight_format is not None or model_kwargs:
        raise ValueError("weight_format and model options apply when model is a path, not a loaded phinfer.Model")
    return TextGenerationPipeline(model, tokenizer)
