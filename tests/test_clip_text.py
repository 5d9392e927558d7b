"""A user's local CLIP text model (Hugging Face layout) as the text encoder: its BPE, its weights by their key
names, causal attention, the null text, a self-contained spec (no folder needed after), and clear errors."""

import json

import pytest
import torch
from safetensors.torch import save_file

from codecgen.nn.clip_text import CLIPTextEncoder, bytes_to_unicode

MERGES = ["r e", "re d</w>", "c i", "ci r", "cir c", "l e</w>", "circ le</w>", "m o", "mo v", "mov e", "move s</w>"]


def _hf_key(key: str) -> str:
    """Our parameter name -> the transformers CLIPTextModel's."""
    if key.startswith(("token_embedding", "position_embedding")):
        return "text_model.embeddings." + key
    if key.startswith("layers."):
        _, i, rest = key.split(".", 2)
        group = "mlp." if rest.startswith("fc") else "" if rest.startswith("layer_norm") else "self_attn."
        return f"text_model.encoder.layers.{i}.{group}{rest}"
    return "text_model." + key


def tiny_clip_folder(path, seed=0):
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in MERGES]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    config = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "max_position_embeddings": 16, "hidden_act": "quick_gelu"}
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    torch.manual_seed(seed)
    reference = CLIPTextEncoder(config=config, vocab=vocab, merges=MERGES, max_words=16)
    for p in reference.parameters():
        torch.nn.init.normal_(p, std=0.2)
    save_file({_hf_key(k): v.contiguous() for k, v in reference.state_dict().items()}, str(path / "model.safetensors"))
    return path, vocab, reference


def test_clip_bpe_codes_words_by_its_merges(tmp_path):
    folder, vocab, _ = tiny_clip_folder(tmp_path / "clip")
    enc = CLIPTextEncoder(str(folder), max_words=16)
    ids = enc.tokenize(["A  red circle moves!"])[0].tolist()
    expected = [vocab[t] for t in ("<|startoftext|>", "a</w>", "red</w>", "circle</w>", "moves</w>", "!</w>",
                                   "<|endoftext|>")]
    assert ids[:7] == expected and set(ids[7:]) == {vocab["<|endoftext|>"]}
    assert enc.unknown_words("any words at all") == []
    with pytest.raises(ValueError, match="empty"):
        enc.tokenize(["  "])
    with pytest.raises(ValueError, match="at most 14"):
        enc.tokenize(["red " * 15])


def test_clip_weights_load_by_their_names_and_the_spec_needs_no_folder(tmp_path):
    from codecgen.config import build, init_spec

    folder, _, reference = tiny_clip_folder(tmp_path / "clip")
    enc = CLIPTextEncoder(str(folder), max_words=16)
    ids = enc.tokenize(["a red circle", "moves"])
    out = enc(ids)
    assert out.shape == (2, 16, 32) and torch.allclose(out, reference(ids))
    assert not any(p.requires_grad for p in enc.parameters())  # frozen by default, as Stable Diffusion's
    # causal: a token's output does not depend on the tokens after it
    other = ids.clone()
    other[0, 4:] = ids[0, 1]  # change every token after the fourth
    assert torch.allclose(enc(other)[0, :4], out[0, :4], atol=1e-6) and not torch.allclose(enc(other), out)
    assert enc(torch.zeros(1, 16, dtype=torch.long)).abs().max() == 0  # the null text of condition dropout
    spec = init_spec(enc)
    assert spec["init_args"]["local_dir"] is None and spec["init_args"]["vocab"]
    rebuilt = build(json.loads(json.dumps(spec)))
    rebuilt.load_state_dict(enc.state_dict())
    assert torch.equal(rebuilt(ids), out)


def test_a_bad_clip_folder_is_one_clear_error(tmp_path):
    folder, _, _ = tiny_clip_folder(tmp_path / "clip")
    (folder / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no merges.txt"):
        CLIPTextEncoder(str(folder))
    folder, _, _ = tiny_clip_folder(tmp_path / "clip2")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    with pytest.raises(ValueError, match="does not fit its config.json"):
        CLIPTextEncoder(str(folder), max_words=16)


def test_a_text_to_image_model_takes_it_in_place_of_the_small_encoder(tmp_path):
    import yaml

    from codecgen.config import build

    folder, _, _ = tiny_clip_folder(tmp_path / "clip")
    spec = yaml.safe_load(open("configs/videogen/text_to_image_tiny.yaml"))["model"]
    spec["init_args"]["text_encoder"] = {"class_path": "codecgen.nn.clip_text.CLIPTextEncoder",
                                         "init_args": {"local_dir": str(folder), "max_words": 16}}
    model = build(spec)
    frames = torch.rand(2, 1, 3, 32, 32) * 2 - 1
    x0, ids = model.latents_and_condition({"frames": frames, "caption": ["a red circle", "moves"]})
    out = model.denoise(x0, torch.tensor([10, 500]), ids)
    assert out.shape == x0.shape and torch.isfinite(out).all()
