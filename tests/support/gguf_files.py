"""Tiny GGUF files written here with the ``gguf`` package: a random Llama and a ChatML
byte-level BPE tokenizer, laid out as llama.cpp lays out a converted Hugging Face model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEXTS = ["What is 59 + 63? Put the final answer in a box.", "Hello world, the sum is 122."] * 20
#: HF's Llama names per block, and llama.cpp's.
BLOCK_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    """A ~300-token byte-level BPE with ChatML's special tokens; ``<|im_end|>`` ends a turn."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[END_OF_TEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TEXTS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=IM_START, eos_token=IM_END, pad_token=IM_END
    )
    fast.chat_template = CHATML
    return fast


def random_llama(vocab_size: int, tied: bool, seed: int = 0) -> LlamaForCausalLM:
    """2 layers, 4 query heads sharing 2 key/value heads (so the rotary row order matters)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from 1, so a lost norm weight shows
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    return model


def interleave_rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """A q/k projection ``[heads * head_dim, hidden]`` in GGUF's row order: within each head,
    rotary pairs are adjacent (0, d/2, 1, d/2+1, ...) where Hugging Face keeps the two halves
    apart (0, 1, ..., d/2, d/2+1, ...)."""
    rows, hidden = weight.shape
    halves = weight.reshape(heads, 2, rows // heads // 2, hidden)
    return halves.transpose(0, 2, 1, 3).reshape(rows, hidden)


def _gguf_tensors(model: LlamaForCausalLM) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's names (float32)."""
    config = model.config
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
    }
    if not config.tie_word_embeddings:
        out["output.weight"] = state["lm_head.weight"]
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in BLOCK_NAMES.items():
            value = state[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name in ("attn_q", "attn_k"):
                query = gguf_name == "attn_q"
                heads = config.num_attention_heads if query else config.num_key_value_heads
                value = interleave_rotary_rows(value, heads)
            out[f"blk.{layer}.{gguf_name}.weight"] = value
    return out


def write_gguf(
    path: Path,
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    quantize: str = "F32",
    eot: str | None = None,
) -> Path:
    """``model`` and ``tokenizer`` as a GGUF file at ``path``; matrices stored as ``quantize``
    (``"F32"`` or ``"Q8_0"``), norms as F32, as llama.cpp stores them."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    qtype = gguf.GGMLQuantizationType[quantize]
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if quantize == "F32" else 7)  # MOSTLY_Q8_0
    vocab = tokenizer.backend_tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    special = {END_OF_TEXT, IM_START, IM_END}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    )
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([" ".join(pair) for pair in merges])
    writer.add_bos_token_id(vocab[IM_START])
    writer.add_eos_token_id(vocab[IM_END])
    writer.add_pad_token_id(vocab[IM_END])
    if eot is not None:
        writer.add_eot_token_id(vocab[eot])
    writer.add_chat_template(CHATML)
    for name, value in _gguf_tensors(model).items():
        if value.ndim == 2 and quantize != "F32":
            writer.add_tensor(name, gguf.quants.quantize(value, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
