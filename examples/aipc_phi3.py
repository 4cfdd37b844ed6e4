#!/usr/bin/env python3
"""Phi-3-mini on an AI PC's CPU with phinfer: what the Phi-3 Cookbook's "AI PC" examples do (Intel NPU
Acceleration Library, DirectML via ONNX Runtime GenAI) with transformers' pipeline, here with phinfer.

    python3 examples/aipc_phi3.py ~/models/Phi-3-mini-4k-instruct [--weight-format int4] [--max-new-tokens 256]

MODEL is a Hugging Face checkpoint folder (microsoft/Phi-3-mini-4k-instruct as downloaded) or a phinfer
model file. The guide loads the model in int4 (``dtype=npu_lib.int4``); so does this script by default:
a Hugging Face folder is converted once and cached (~/.cache/phinfer), later runs start from the cache.
"""

import argparse
import os
import time

import phinfer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Hugging Face checkpoint folder or phinfer model file")
    parser.add_argument("--weight-format", default="int4", help="fp32, fp16, bf16, int8, int4, or 'none' to run as stored")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()
    # A phinfer model file is already converted; only a Hugging Face folder takes a weight format.
    weight_format = None if args.weight_format == "none" or os.path.isfile(args.model) else args.weight_format

    start = time.monotonic()
    # Guide: model = NPUModelForCausalLM.from_pretrained(model_id, dtype=npu_lib.int4, ...);
    #        tokenizer = AutoTokenizer.from_pretrained(model_id)
    pipe = phinfer.pipeline("text-generation", model=args.model, weight_format=weight_format, device="cpu")
    print(f"[loaded {pipe.model.path} in {time.monotonic() - start:.1f} s]")

    # 1. The NPU example: a prompt already in Phi-3's chat format, streamed with TextStreamer(skip_prompt=True).
    text_streamer = phinfer.TextStreamer(skip_prompt=True)
    query = "<|system|>You are a helpful AI assistant.<|end|><|user|>Can you introduce yourself?<|end|><|assistant|>"
    generation_args = {
        "max_new_tokens": args.max_new_tokens,
        "return_full_text": False,
        "temperature": 0.3,
        "do_sample": False,
        "streamer": text_streamer,
    }
    print("\n--- prompt text, streamed ---")
    pipe(query, **generation_args)

    # 2. The chat example: messages with a system prompt and an earlier exchange, generation_args without a
    #    streamer; the reply is output[0]["generated_text"].
    messages = [
        {"role": "system", "content": "You are a helpful AI assistant."},
        {"role": "user", "content": "Can you provide ways to eat combinations of bananas and dragonfruits?"},
        {"role": "assistant", "content": "Sure! Here are some ways to eat bananas and dragonfruits together: "
                                         "1. Banana and dragonfruit smoothie: Blend bananas and dragonfruits together "
                                         "with some milk and honey. 2. Banana and dragonfruit salad: Mix sliced "
                                         "bananas and dragonfruits together with some lemon juice and honey."},
        {"role": "user", "content": "What about solving an 2x + 3 = 7 equation?"},
    ]
    generation_args = {
        "max_new_tokens": args.max_new_tokens,
        "return_full_text": False,
        "temperature": 0.0,
        "do_sample": False,
    }
    print("\n--- chat messages ---")
    output = pipe(messages, **generation_args)
    print(output[0]["generated_text"])

    # 3. The DirectML (ONNX Runtime GenAI) example's token loop: stream the answer of a chat as it is made.
    print("\n--- token stream (Ctrl-C stops the answer) ---")
    chat = [{"role": "user", "content": "Tell me a joke about computers."}]
    stream = pipe.model.stream(chat, max_new_tokens=args.max_new_tokens)
    try:
        for text in stream:
            print(text, end="", flush=True)
    except KeyboardInterrupt:
        print(" [stopped]")
    print()
    stats = stream.result.stats
    print(f"[{stats['generated_tokens']} tokens, first after {stats['ttft_ms']:.0f} ms, "
          f"{stats['decode_tokens_per_s']:.1f} tokens/s]")


if __name__ == "__main__":
    main()
