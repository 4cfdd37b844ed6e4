"""The phinfer Python module against the golden models of ../shared/models (see its README)."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import phinfer

GOLDEN_ATOL = 1e-3  # ../shared/models/README.md: fp32 engine on the bf16 weights of the phi3 models
PHI4_ATOL = 2e-3    # the same for phi4-tiny-synth's chat and text300 cases


class CollectingStreamer(phinfer.TextStreamer):
    """A TextStreamer that keeps the text instead of printing it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pieces = []
        self.ends = 0

    def on_finalized_text(self, text, stream_end=False):
        self.pieces.append(text)
        self.ends += stream_end


# --- exactness through every path -------------------------------------------------------------


@pytest.mark.parametrize("case", ["chat", "text300"])
def test_generate_ids_match_golden_greedy_ids(mha, mha_golden, case):
    c = mha_golden[case]
    r = mha.generate(c["prompt_ids"], max_new_tokens=len(c["greedy_ids"]), ignore_eos=True)
    assert r.prompt_ids == c["prompt_ids"]
    assert r.output_ids == c["greedy_ids"]
    assert r.finish_reason == "length"
    assert r.stats["generated_tokens"] == len(c["greedy_ids"])


def test_generate_ids_match_golden_phi4(phi4, phi4_golden):
    c = phi4_golden["chat"]
    assert phi4.tokenizer.apply_chat_template(c["messages"], add_generation_prompt=True) == c["prompt_ids"]
    r = phi4.generate(c["messages"], max_new_tokens=len(c["greedy_ids"]), ignore_eos=True)
    assert r.output_ids == c["greedy_ids"]


@pytest.mark.parametrize("case", ["chat", "text300"])
def test_pipeline_text_is_the_detokenized_golden_ids(mha, mha_golden, case):
    c = mha_golden[case]
    tok = mha.tokenizer
    assert tok.encode(c["prompt_text"]) == c["prompt_ids"]
    expected = tok.decode(c["greedy_ids"], skip_special_tokens=True)
    assert expected
    pipe = phinfer.pipeline("text-generation", model=mha)
    args = {"max_new_tokens": len(c["greedy_ids"]), "ignore_eos": True, "temperature": 0.0, "do_sample": False}
    out = pipe(c["prompt_text"], return_full_text=False, **args)
    assert out == [{"generated_text": expected}]
    # transformers' default return_full_text=True: the prompt as written, then the generated text.
    assert pipe(c["prompt_text"], **args) == [{"generated_text": c["prompt_text"] + expected}]


def test_streamer_receives_the_generated_text(mha, mha_golden):
    c = mha_golden["text300"]
    expected = mha.tokenizer.decode(c["greedy_ids"], skip_special_tokens=True)
    pipe = phinfer.pipeline("text-generation", model=mha)
    streamer = CollectingStreamer(skip_prompt=True)
    out = pipe(c["prompt_text"], max_new_tokens=32, ignore_eos=True, return_full_text=False, streamer=streamer)
    assert "".join(streamer.pieces) == expected == out[0]["generated_text"]
    assert len([p for p in streamer.pieces if p]) > 1  # streamed piece by piece, not at the end
    assert streamer.ends == 1

    # skip_prompt=False (transformers' default): the prompt's text comes first.
    streamer = CollectingStreamer()
    pipe(c["prompt_text"], max_new_tokens=32, ignore_eos=True, streamer=streamer)
    assert "".join(streamer.pieces) == mha.tokenizer.decode(c["prompt_ids"], skip_special_tokens=True) + expected

    # The Python iterator gives the same text.
    stream = mha.stream(c["prompt_ids"], max_new_tokens=32, ignore_eos=True)
    assert "".join(stream) == expected
    assert stream.result.output_ids == c["greedy_ids"]


def test_text_streamer_prints_to_stdout(mha, mha_golden, capsys):
    c = mha_golden["chat"]
    expected = mha.tokenizer.decode(c["greedy_ids"], skip_special_tokens=True)
    pipe = phinfer.pipeline("text-generation", model=mha)
    pipe(c["prompt_text"], max_new_tokens=32, ignore_eos=True, streamer=phinfer.TextStreamer(skip_prompt=True))
    assert capsys.readouterr().out == expected + "\n"


def test_chat_messages_follow_transformers(mha):
    messages = [{"role": "system", "content": "You are a helpful AI assistant."},
                {"role": "user", "content": "Can you introduce yourself?"}]
    tok = mha.tokenizer
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Phi-3-mini-4k's own template (this tokenizer's) leaves the system message out.
    assert text == "<s><|user|>\nCan you introduce yourself?<|end|>\n<|assistant|>\n"
    ids = tok.apply_chat_template(messages, add_generation_prompt=True)
    assert ids == tok.encode(text, add_special_tokens=False)
    reply = mha.generate(ids, max_new_tokens=12, ignore_eos=True).text

    pipe = phinfer.pipeline("text-generation", model=mha)
    full = pipe(messages, max_new_tokens=12, ignore_eos=True)
    assert full == [{"generated_text": messages + [{"role": "assistant", "content": reply}]}]
    assert pipe(messages, max_new_tokens=12, ignore_eos=True, return_full_text=False) == [{"generated_text": reply}]
    # A list of inputs gives one result list each.
    outs = pipe([messages, "Hello"], max_new_tokens=12, ignore_eos=True, return_full_text=False)
    assert outs == [[{"generated_text": reply}],
                    [{"generated_text": mha.generate("Hello", max_new_tokens=12, ignore_eos=True).text}]]


def test_logits_match_golden(mha, mha_golden):
    c = mha_golden["text300"]
    last = mha.logits(c["prompt_ids"])
    assert isinstance(last, np.ndarray) and last.dtype == np.float32 and last.shape == (32064,)
    np.testing.assert_allclose(last, np.array(c["last_logits"], dtype=np.float32), rtol=0, atol=GOLDEN_ATOL)

    positions = sorted(int(p) for p in c["logits_at"])
    many = mha.logits(c["prompt_ids"], positions=positions)
    assert many.shape == (len(positions), 32064)
    for row, p in zip(many, positions):
        ids, values = zip(*c["logits_at"][str(p)])
        np.testing.assert_allclose(row[list(ids)], values, rtol=0, atol=GOLDEN_ATOL, err_msg=f"position {p}")
    every = mha.logits(c["prompt_ids"][:5], positions="all")
    assert every.shape == (5, 32064)


def test_logits_match_golden_phi4(phi4, phi4_golden):
    c = phi4_golden["chat"]
    last = phi4.logits(c["prompt_ids"])
    assert last.shape == (200064,)
    np.testing.assert_allclose(last, np.array(c["last_logits"], dtype=np.float32), rtol=0, atol=PHI4_ATOL)


def test_generator_steps_match_golden(mha, mha_golden):
    c = mha_golden["chat"]
    g = phinfer.Generator(mha, max_new_tokens=32, ignore_eos=True)
    g.append_tokens(c["prompt_ids"])
    np.testing.assert_allclose(g.logits(), np.array(c["last_logits"], dtype=np.float32), rtol=0, atol=GOLDEN_ATOL)
    out = []
    while not g.is_done():
        out.append(g.generate_next_token())
    assert out == c["greedy_ids"]
    g.rewind_to(len(c["prompt_ids"]) + 3)
    assert g.tokens == c["prompt_ids"] + c["greedy_ids"][:3]


def test_tokenizer_from_folder_matches_the_models(mha, mha_dir):
    tok = phinfer.Tokenizer.from_pretrained(mha_dir)
    text = "Hello world, <|user|> naïve café 🍌"
    assert tok.encode(text) == mha.tokenizer.encode(text)
    assert tok(text)["input_ids"] == tok.encode(text)
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.bos_token == "<s>" and tok.bos_token_id == 1
    assert tok.token_to_id("<|end|>") == 32007 and tok.id_to_token(32007) == "<|end|>"


def test_int4_conversion_runs_and_is_cached(mha_dir, mha_golden, tmp_path):
    pipe = phinfer.pipeline("text-generation", model=mha_dir, weight_format="int4", device="cpu",
                            cache_dir=tmp_path, threads=2)
    assert str(pipe.model.path).startswith(str(tmp_path))
    c = mha_golden["chat"]
    r = pipe.model.generate(c["prompt_ids"], max_new_tokens=8, ignore_eos=True)
    assert len(r.output_ids) == 8
    # int4 weights cannot meet the fp32 tolerance; the logits stay close and the top choice agrees.
    logits = pipe.model.logits(c["prompt_ids"])
    golden = np.array(c["last_logits"], dtype=np.float32)
    assert int(np.argmax(logits)) == int(np.argmax(golden)) == c["greedy_ids"][0]
    assert np.corrcoef(logits, golden)[0, 1] > 0.95  # measured 0.986; unrelated logits give about 0


# --- Ctrl-C, the GIL, errors ------------------------------------------------------------------


def interrupt_after(seconds):
    """Sends SIGINT to this process from another thread, as Ctrl-C in a terminal does."""
    timer = threading.Timer(seconds, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


# Seconds of work, so the SIGINT at 0.3 s lands mid-generation. Not more: the KV cache of prompt + max_new_tokens
# is reserved before the first token (about 0.3 s for 8000 tokens of this model), and Ctrl-C takes effect after.
LONG = {"max_new_tokens": 8000, "ignore_eos": True}


def test_keyboard_interrupt_stops_generate(longrope, mha, mha_golden):
    prompt = mha_golden["chat"]["prompt_ids"]
    timer = interrupt_after(0.3)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        longrope.generate(prompt, **LONG)
    timer.join()
    print(f"generate stopped {time.monotonic() - start - 0.3:.3f} s after SIGINT")
    # The model works afterwards, and so does another one.
    r = longrope.generate(prompt, max_new_tokens=4, ignore_eos=True)
    assert len(r.output_ids) == 4
    assert mha.generate(prompt, max_new_tokens=32, ignore_eos=True).output_ids == mha_golden["chat"]["greedy_ids"]


def test_keyboard_interrupt_stops_stream_and_streamer(longrope, mha, mha_golden):
    prompt = mha_golden["chat"]["prompt_ids"]
    stream = longrope.stream(prompt, **LONG)
    pieces = 0
    timer = interrupt_after(0.3)
    with pytest.raises(KeyboardInterrupt):
        for _ in stream:
            pieces += 1
    timer.join()
    assert stream.result.finish_reason == "stopped"
    assert 0 < len(stream.result.output_ids) < LONG["max_new_tokens"]

    # Ctrl-C while a Python streamer callback runs: the KeyboardInterrupt raised there ends the generation.
    class InterruptingStreamer(CollectingStreamer):
        def on_finalized_text(self, text, stream_end=False):
            super().on_finalized_text(text, stream_end)
            if len(self.pieces) == 3:
                os.kill(os.getpid(), signal.SIGINT)

    streamer = InterruptingStreamer(skip_prompt=True)
    with pytest.raises(KeyboardInterrupt):
        mha.generate(prompt, streamer=streamer, max_new_tokens=4000, ignore_eos=True)
    assert len(streamer.pieces) == 3 and streamer.ends == 0
    assert len(longrope.generate(prompt, max_new_tokens=3, ignore_eos=True).output_ids) == 3


def test_breaking_out_of_a_stream_cancels_it(longrope, mha_golden):
    prompt = mha_golden["chat"]["prompt_ids"]
    with longrope.stream(prompt, **LONG) as stream:
        for i, _ in enumerate(stream):
            if i == 5:
                break
    assert stream.result.finish_reason == "stopped"
    assert len(longrope.generate(prompt, max_new_tokens=2, ignore_eos=True).output_ids) == 2


def test_gil_is_released_while_generating(longrope, mha_golden):
    count = 0
    done = threading.Event()

    def spin():
        nonlocal count
        while not done.is_set():
            count += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        before = count
        longrope.generate(mha_golden["chat"]["prompt_ids"], max_new_tokens=50, ignore_eos=True)
        during = count - before
        before = count
        longrope.logits(mha_golden["text300"]["prompt_ids"], positions="all")
        during_logits = count - before
    finally:
        done.set()
        thread.join()
    # With the GIL held through the call, the other thread could not run at all.
    assert during > 1000 and during_logits > 1000


def test_errors_are_phinfer_errors_with_the_library_message(mha, tmp_path):
    assert issubclass(phinfer.Error, RuntimeError)
    missing = tmp_path / "no-such-model"
    with pytest.raises(phinfer.Error, match=str(missing)):
        phinfer.Model(missing)
    with pytest.raises(phinfer.Error, match=str(missing)):
        phinfer.pipeline("text-generation", model=str(missing))
    with pytest.raises(phinfer.Error, match="outside the vocabulary"):
        mha.generate([1, 99999], max_new_tokens=2)  # raised on the generation's thread, re-raised here
    with pytest.raises(phinfer.Error, match="temperature"):
        mha.generate("Hello", do_sample=True, temperature=0.0)
    with pytest.raises(phinfer.Error):
        mha.tokenizer.decode([10 ** 9])
    with pytest.raises(phinfer.Error, match="int5"):
        phinfer.Model(tmp_path, weight_format="int5")
    with pytest.raises(phinfer.Error, match="device 'npu'"):
        phinfer.pipeline("text-generation", model=tmp_path, device="npu")
    with pytest.raises(TypeError, match="max_tokens"):
        mha.generate("Hello", max_tokens=3)
    with pytest.raises(ValueError, match="task"):
        phinfer.pipeline("summarization", model=mha)
    # Still usable after every error.
    assert len(mha.generate("Hello", max_new_tokens=2, ignore_eos=True).output_ids) == 2


def test_sampling_is_reproducible_with_a_seed(mha):
    args = {"max_new_tokens": 16, "do_sample": True, "temperature": 0.8, "seed": 7, "ignore_eos": True}
    a = mha.generate("Once upon a time", **args)
    b = mha.generate("Once upon a time", phinfer.GenerationConfig(**args))
    assert a.output_ids == b.output_ids


# --- the GPU (Vulkan; Mesa's lavapipe in CI) -----------------------------------------------------


@pytest.mark.parametrize("case", ["chat", "text300"])
def test_gpu_device_gives_the_golden_greedy_ids(mha_dir, mha_golden, case):
    gpu = phinfer.Model(mha_dir, device="gpu", threads=2)
    c = mha_golden[case]
    r = gpu.generate(c["prompt_ids"], max_new_tokens=len(c["greedy_ids"]), ignore_eos=True)
    assert r.output_ids == c["greedy_ids"]
    last = np.asarray(gpu.logits(c["prompt_ids"]))
    np.testing.assert_allclose(last, np.asarray(c["last_logits"], dtype=np.float32), atol=GOLDEN_ATOL)


def test_unknown_gpu_is_a_phinfer_error(mha_dir):
    with pytest.raises(phinfer.Error, match="gpu:42 does not exist"):
        phinfer.Model(mha_dir, device="gpu:42")
