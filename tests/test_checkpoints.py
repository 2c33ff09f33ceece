"""Checkpoint loaders, the open_clip <-> HF key mapping, zero-shot heads (issue 6), on generated stand-ins."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from standins import (  # noqa: E402
    TINY_CONFIG,
    TINY_MODEL_NAME,
    task_vectors_head_weights,
    tiny_clip,
    write_raw_pickled_encoder,
)

from catlib.benchmarks.clip import checkpoints as ck  # noqa: E402
from catlib.benchmarks.clip import zeroshot as zs  # noqa: E402
from catlib.benchmarks.clip.tasks import CLASS_NAMES, EXPECTED_NUM_CLASSES, TASKS, TEMPLATES  # noqa: E402
from catlib.core.errors import NonFiniteError  # noqa: E402

torch.set_num_threads(1)


def _shapes():
    return ck.visual_shapes(TINY_MODEL_NAME, TINY_CONFIG), ck.text_shapes(TINY_MODEL_NAME, TINY_CONFIG)


# ------------------------------------------------------------------------------------------------------------
# data tables
# ------------------------------------------------------------------------------------------------------------
def test_class_name_counts_and_templates():
    assert {t: len(CLASS_NAMES[t]) for t in TASKS} == EXPECTED_NUM_CLASSES
    assert all(len(set(CLASS_NAMES[t])) == len(CLASS_NAMES[t]) for t in TASKS)
    assert {t: len(TEMPLATES[t]) for t in TASKS} == {
        "SUN397": 2,
        "Cars": 8,
        "RESISC45": 18,
        "EuroSAT": 3,
        "SVHN": 1,
        "GTSRB": 3,
        "MNIST": 1,
        "DTD": 8,
    }
    assert CLASS_NAMES["Cars"][0] == "AM General Hummer SUV 2000" and CLASS_NAMES["SUN397"][-1] == "youth hostel"
    assert TEMPLATES["RESISC45"][6] == "satellite imagery of a {c}." and all(
        "{c}" in t for ts in TEMPLATES.values() for t in ts
    )


# ------------------------------------------------------------------------------------------------------------
# key mapping
# ------------------------------------------------------------------------------------------------------------
def test_roundtrip_openclip_hf_openclip_exact():
    full = tiny_clip(1).state_dict()
    hf = ck.openclip_to_hf_clip(full)
    assert "vision_model.encoder.layers.1.self_attn.k_proj.weight" in hf
    assert hf["visual_projection.weight"].shape == (16, 32)  # (E, W): out x in
    back = ck.hf_clip_to_openclip(hf)
    assert set(back) == set(full)
    for k in full:
        assert torch.equal(back[k], full[k]), k
    # visual only, with and without prefix
    visual, _ = ck.split_openclip(full)
    for prefix in ("vision_model.", ""):
        v2 = ck.hf_vision_to_openclip(ck.openclip_visual_to_hf(visual, prefix=prefix))
        assert set(v2) == set(visual) and all(torch.equal(v2[k], visual[k]) for k in visual)


def test_vit_b_32_hf_keys_match_documented_layout():
    """The mapping applied to the real ViT-B-32 architecture (meta tensors) gives FusionBench's table: 87,456,000
    vision-model parameters, and open_clip's proj (768, 512) ↔ visual_projection.weight (512, 768)."""
    with torch.device("meta"):
        visual = ck.build_visual("ViT-B-32").state_dict()
    hf = ck.openclip_visual_to_hf(visual)
    proj = hf.pop("visual_projection.weight")
    assert tuple(visual["proj"].shape) == (768, 512) and tuple(proj.shape) == (512, 768)
    assert sum(v.numel() for v in hf.values()) == 87_456_000
    assert tuple(hf["vision_model.embeddings.position_embedding.weight"].shape) == (50, 768)
    assert tuple(hf["vision_model.encoder.layers.11.mlp.fc1.weight"].shape) == (3072, 768)
    assert tuple(hf["vision_model.encoder.layers.0.self_attn.q_proj.weight"].shape) == (768, 768)
    assert "vision_model.pre_layrnorm.weight" in hf and "vision_model.post_layernorm.bias" in hf
    assert len(hf) == 5 + 2 + 12 * 16


def _hf_layers(sd, prefix, x, n_layers, heads, causal):
    """Reference HF CLIP encoder (separate q/k/v, QuickGELU), written from the HF module structure."""
    B, L, W = x.shape
    hd = W // heads
    for i in range(n_layers):
        p = f"{prefix}encoder.layers.{i}."
        h = F.layer_norm(x, (W,), sd[p + "layer_norm1.weight"], sd[p + "layer_norm1.bias"])
        q = F.linear(h, sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.q_proj.bias"]) * hd**-0.5
        k = F.linear(h, sd[p + "self_attn.k_proj.weight"], sd[p + "self_attn.k_proj.bias"])
        v = F.linear(h, sd[p + "self_attn.v_proj.weight"], sd[p + "self_attn.v_proj.bias"])
        q, k, v = (t.view(B, L, heads, hd).transpose(1, 2) for t in (q, k, v))
        att = q @ k.transpose(-1, -2)
        if causal:
            att = att + torch.full((L, L), float("-inf")).triu(1)
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, L, W)
        x = x + F.linear(o, sd[p + "self_attn.out_proj.weight"], sd[p + "self_attn.out_proj.bias"])
        h = F.layer_norm(x, (W,), sd[p + "layer_norm2.weight"], sd[p + "layer_norm2.bias"])
        h = F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])
        h = h * torch.sigmoid(1.702 * h)
        x = x + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    return x


def test_hf_mapping_forward_equivalence_vision_and_text():
    """open_clip forward with its own weights == a from-scratch HF-style forward on the mapped weights."""
    torch.manual_seed(0)
    model = tiny_clip(2)
    hf = ck.openclip_to_hf_clip(model.state_dict())
    v, t = TINY_CONFIG["vision_cfg"], TINY_CONFIG["text_cfg"]
    img = torch.randn(3, 3, v["image_size"], v["image_size"])
    with torch.no_grad():
        ref = model.encode_image(img)
        p = "vision_model."
        x = F.conv2d(img, hf[p + "embeddings.patch_embedding.weight"], stride=v["patch_size"])
        x = x.flatten(2).transpose(1, 2)
        cls = hf[p + "embeddings.class_embedding"].expand(3, 1, -1)
        x = torch.cat([cls, x], 1) + hf[p + "embeddings.position_embedding.weight"]
        x = F.layer_norm(x, (v["width"],), hf[p + "pre_layrnorm.weight"], hf[p + "pre_layrnorm.bias"])
        x = _hf_layers(hf, p, x, v["layers"], v["width"] // v["head_width"], causal=False)
        pooled = F.layer_norm(x[:, 0], (v["width"],), hf[p + "post_layernorm.weight"], hf[p + "post_layernorm.bias"])
        out = F.linear(pooled, hf["visual_projection.weight"])
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)

        import open_clip

        tok = open_clip.tokenize(
            ["a photo of a cat.", 'a photo of the number: "7".'], context_length=t["context_length"]
        )
        ref_t = model.encode_text(tok)
        p = "text_model."
        x = (
            F.embedding(tok, hf[p + "embeddings.token_embedding.weight"])
            + hf[p + "embeddings.position_embedding.weight"]
        )
        x = _hf_layers(hf, p, x, t["layers"], t["heads"], causal=True)
        x = F.layer_norm(x, (t["width"],), hf[p + "final_layer_norm.weight"], hf[p + "final_layer_norm.bias"])
        pooled = x[torch.arange(2), tok.argmax(-1)]
        out_t = F.linear(pooled, hf["text_projection.weight"])
        assert torch.allclose(out_t, ref_t, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------------
# loaders: every layout gives the same open_clip state dicts
# ------------------------------------------------------------------------------------------------------------
def _assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == torch.float32 and torch.equal(a[k], b[k].float()), k


@pytest.mark.parametrize(
    "which,kw", [("checkpoint_root", {}), ("pickle_root", {"trust_pickle": True}), ("hf_root", {})]
)
def test_layouts_load_identical_state_dicts(roots, which, kw):
    c = ck.load_checkpoints(roots[which], TINY_MODEL_NAME, roots["tasks"], **kw)
    expected_keys = set(tiny_clip(0).visual.state_dict())
    assert set(c.pretrained) == expected_keys
    _assert_same(c.pretrained, roots["base"].visual.state_dict())
    for t in roots["tasks"]:
        _assert_same(c.finetuned[t], roots["finetuned"][t].visual.state_dict())
    if which == "hf_root":
        assert c.layout == "hf" and c.text is not None and not c.head_weights
        _assert_same(c.text, ck.split_openclip(roots["base"].state_dict())[1])
        assert "models--tanganke--" in c.sources[roots["tasks"][-1]]  # HF cache entry, prefix-less keys
    else:
        assert c.layout == "task_vectors" and c.text is None  # ImageEncoder(keep_lang=False) has no text transformer
        assert set(c.head_weights) == set(roots["tasks"])


def test_pickle_loading_leaves_no_fake_modules(roots):
    ck.load_checkpoints(roots["pickle_root"], TINY_MODEL_NAME, roots["tasks"][:1], trust_pickle=True)
    assert "src.modeling" not in sys.modules and "src" not in sys.modules


def test_openclip_weight_file(roots):
    vs, ts = _shapes()
    parts = ck.read_clip_parts(roots["openclip_weights"], vs, ts)
    full = roots["base"].state_dict()
    _assert_same(parts.visual, ck.split_openclip(full)[0])
    _assert_same(parts.text, ck.split_openclip(full)[1])
    # as θ0 + text source of a task_vectors root that lacks zeroshot.pt
    c = ck.load_checkpoints(
        roots["checkpoint_root"], TINY_MODEL_NAME, ["MNIST"], openclip_weights=roots["openclip_weights"]
    )
    assert c.text is not None and "openclip_weights" in c.sources


# ------------------------------------------------------------------------------------------------------------
# error paths
# ------------------------------------------------------------------------------------------------------------
def _copy_root(roots, which, tmp_path):
    dst = tmp_path / which
    shutil.copytree(roots[which], dst)
    return dst


def test_untrusted_pickle_is_refused(roots):
    f = Path(roots["pickle_root"]) / TINY_MODEL_NAME / "MNIST" / "finetuned.pt"
    with pytest.raises(ck.UntrustedPickleError) as e:
        ck.load_checkpoints(roots["pickle_root"], TINY_MODEL_NAME, ["MNIST"])
    msg = str(e.value)
    assert "pickled module" in msg and "trust_pickle=True" in msg and "src.modeling.ImageEncoder" in msg
    assert "--trust-pickle" in msg
    assert e.value.path.endswith("zeroshot.pt")
    with pytest.raises(ck.UntrustedPickleError, match="finetuned.pt"):
        ck.read_file(f)
    assert isinstance(e.value, ValueError)


def test_missing_task_and_missing_file(roots, tmp_path):
    with pytest.raises(ck.CheckpointNotFoundError) as e:
        ck.load_checkpoints(roots["checkpoint_root"], TINY_MODEL_NAME, ["MNIST", "GTSRB"])
    assert "GTSRB" in str(e.value) and e.value.path.endswith(os.path.join("GTSRB", "finetuned.pt"))
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(ck.CheckpointNotFoundError, match="tanganke/catlib-tiny-clip_gtsrb"):
        ck.load_checkpoints(roots["hf_root"], TINY_MODEL_NAME, ["GTSRB"])
    root = _copy_root(roots, "checkpoint_root", tmp_path)
    (root / TINY_MODEL_NAME / "zeroshot.pt").unlink()
    with pytest.raises(ck.CheckpointNotFoundError, match="zeroshot.pt"):
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST"])
    with pytest.raises(ck.CheckpointNotFoundError, match="checkpoint root not found"):
        ck.load_checkpoints(tmp_path / "nowhere", TINY_MODEL_NAME, ["MNIST"])
    with pytest.raises(ck.CheckpointNotFoundError, match="cannot detect the checkpoint layout"):
        ck.load_checkpoints(tmp_path, TINY_MODEL_NAME, ["MNIST"], model_config=TINY_CONFIG)


def test_truncated_files(roots, tmp_path):
    root = _copy_root(roots, "checkpoint_root", tmp_path)
    f = root / TINY_MODEL_NAME / "DTD" / "finetuned.pt"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ck.CorruptCheckpointError) as e:
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST", "DTD"])
    assert e.value.path == str(f) and "truncated" in str(e.value)
    hf = _copy_root(roots, "hf_root", tmp_path)
    g = hf / "tanganke" / "catlib-tiny-clip_mnist" / "model.safetensors"
    g.write_bytes(g.read_bytes()[:1000])
    with pytest.raises(ck.CorruptCheckpointError, match="model.safetensors"):
        ck.load_checkpoints(hf, TINY_MODEL_NAME, ["MNIST"])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ck.CorruptCheckpointError, match="junk.pt"):
        ck.read_file(junk)


def test_zero_byte_files(roots, tmp_path):
    """An empty file (an interrupted download) is a CorruptCheckpointError naming it, for .pt and .safetensors, θ0
    and fine-tuned, with or without trust (torch.load's bare EOFError used to surface as an IndexError)."""
    root = _copy_root(roots, "checkpoint_root", tmp_path)
    for f in (root / TINY_MODEL_NAME / "DTD" / "finetuned.pt", root / TINY_MODEL_NAME / "zeroshot.pt"):
        f.write_bytes(b"")
        for trust in (False, True):
            with pytest.raises(ck.CorruptCheckpointError) as e:
                ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST", "DTD"], trust_pickle=trust)
            assert e.value.path == str(f) and "empty file (0 bytes)" in str(e.value), str(e.value)
    hf = _copy_root(roots, "hf_root", tmp_path)
    g = hf / "tanganke" / "catlib-tiny-clip_mnist" / "model.safetensors"
    g.write_bytes(b"")
    with pytest.raises(ck.CorruptCheckpointError) as e:
        ck.load_checkpoints(hf, TINY_MODEL_NAME, ["MNIST"])
    assert e.value.path == str(g) and "empty file (0 bytes)" in str(e.value)


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_truncated_at_any_length(tmp_path, fmt):
    """A file cut anywhere (1 byte, inside the header, half, all but its last bytes) is a CorruptCheckpointError
    naming the file, never IndexError / EOFError / a raw torch or pickle error."""
    sd = tiny_clip(1).visual.state_dict()
    full = tmp_path / ("full.safetensors" if fmt == "safetensors" else "full.pt")
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(full))
    else:
        torch.save(sd, full, _use_new_zipfile_serialization=fmt == "zip")
    data = full.read_bytes()
    vs, ts = _shapes()
    assert set(ck.read_clip_parts(full, vs, ts).visual) == set(sd)
    for n in (1, 2, 10, 100, len(data) // 2, len(data) - 10, len(data) - 1):
        f = tmp_path / f"cut{n}{full.suffix}"
        f.write_bytes(data[:n])
        for trust in (False, True):
            with pytest.raises(ck.CorruptCheckpointError) as e:
                ck.read_clip_parts(f, vs, ts, trust_pickle=trust)
            assert e.value.path == str(f), (n, trust, str(e.value))


def test_non_finite_weights_are_refused(roots, tmp_path):
    """NaN in a fine-tuned checkpoint, Inf in θ0 (task_vectors .pt and HF safetensors) and NaN in a head file:
    NonFiniteCheckpointError (a CheckpointError and a NonFiniteError) naming the file and the key."""
    root = _copy_root(roots, "checkpoint_root", tmp_path)
    f = root / TINY_MODEL_NAME / "DTD" / "finetuned.pt"
    sd = torch.load(f, weights_only=True)
    key = "transformer.resblocks.1.attn.in_proj_weight"
    sd["model.visual." + key][3, 4] = float("nan")
    torch.save(sd, f)
    with pytest.raises(ck.NonFiniteCheckpointError) as e:
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST", "DTD"])
    assert e.value.path == str(f) and e.value.key == key and "1 NaN" in str(e.value)
    assert isinstance(e.value, ck.CheckpointError) and isinstance(e.value, NonFiniteError)
    torch.save(torch.load(roots["checkpoint_root"] + f"/{TINY_MODEL_NAME}/DTD/finetuned.pt", weights_only=True), f)
    z = root / TINY_MODEL_NAME / "zeroshot.pt"
    sd = torch.load(z, weights_only=True)
    sd["model.visual.conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save(sd, z)
    with pytest.raises(ck.NonFiniteCheckpointError) as e:
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST"])
    assert e.value.path == str(z) and e.value.key == "conv1.weight" and "1 Inf" in str(e.value)
    torch.save(torch.load(roots["checkpoint_root"] + f"/{TINY_MODEL_NAME}/zeroshot.pt", weights_only=True), z)
    h = root / TINY_MODEL_NAME / "head_MNIST.pt"
    hd = torch.load(h, weights_only=True)
    hd["bias"][0] = float("nan")
    torch.save(hd, h)
    with pytest.raises(ck.NonFiniteCheckpointError) as e:
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST"])
    assert e.value.path == str(h) and e.value.key == "bias"
    from safetensors.torch import load_file, save_file

    hf = _copy_root(roots, "hf_root", tmp_path)
    g = hf / "openai" / "catlib-tiny-clip" / "model.safetensors"
    hsd = load_file(str(g))
    hsd["vision_model.post_layernorm.weight"][0] = float("-inf")
    save_file(hsd, str(g))
    with pytest.raises(ck.NonFiniteCheckpointError) as e:
        ck.load_checkpoints(hf, TINY_MODEL_NAME, ["MNIST"])
    assert e.value.path == str(g) and e.value.key == "ln_post.weight"


def test_raw_pickled_module(roots, tmp_path):
    """A whole ImageEncoder written with a raw pickle.dump (torch.load cannot read it): refused without trust, with
    a message naming --trust-pickle, trust_pickle=True and the pickled class; loaded with trust, equal to the
    weights it was written from; a truncated one is corrupt either way; convert_pickled_checkpoint converts it."""
    root = _copy_root(roots, "checkpoint_root", tmp_path)
    f = root / TINY_MODEL_NAME / "DTD" / "finetuned.pt"
    write_raw_pickled_encoder(f, roots["finetuned"]["DTD"])
    assert "src" not in sys.modules
    with pytest.raises(ck.UntrustedPickleError) as e:
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST", "DTD"])
    msg = str(e.value)
    assert e.value.path == str(f) and "--trust-pickle" in msg and "trust_pickle=True" in msg, msg
    assert "raw Python pickle" in msg and "src.modeling.ImageEncoder" in msg, msg
    c = ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST", "DTD"], trust_pickle=True)
    _assert_same(c.finetuned["DTD"], roots["finetuned"]["DTD"].visual.state_dict())
    _assert_same(c.finetuned["MNIST"], roots["finetuned"]["MNIST"].visual.state_dict())
    assert "src" not in sys.modules and "src.modeling" not in sys.modules
    out = ck.convert_pickled_checkpoint(f, tmp_path / "converted.safetensors")
    vs, ts = _shapes()
    _assert_same(ck.read_clip_parts(out, vs, ts).visual, roots["finetuned"]["DTD"].visual.state_dict())
    f.write_bytes(f.read_bytes()[:-100])
    for trust in (False, True):
        with pytest.raises(ck.CorruptCheckpointError, match="truncated") as e:
            ck.load_checkpoints(root, TINY_MODEL_NAME, ["DTD"], trust_pickle=trust)
        assert e.value.path == str(f)


def test_wrong_shape_names_key_and_file(roots, tmp_path):
    root = _copy_root(roots, "checkpoint_root", tmp_path)
    f = root / TINY_MODEL_NAME / "MNIST" / "finetuned.pt"
    sd = torch.load(f, weights_only=True)
    sd["model.visual.transformer.resblocks.1.mlp.c_fc.weight"] = torch.zeros(7, 32)
    torch.save(sd, f)
    with pytest.raises(ck.ArchitectureMismatchError) as e:
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST"])
    assert e.value.key == "transformer.resblocks.1.mlp.c_fc.weight" and e.value.path == str(f)
    assert "wrong shape (7, 32)" in str(e.value)
    h = root / TINY_MODEL_NAME / "head_MNIST.pt"
    torch.save({"weight": torch.zeros(10, 5), "bias": torch.zeros(10)}, h)
    sd["model.visual.transformer.resblocks.1.mlp.c_fc.weight"] = torch.zeros(128, 32)
    torch.save(sd, f)
    with pytest.raises(ck.ArchitectureMismatchError, match="head weight has shape"):
        ck.load_checkpoints(root, TINY_MODEL_NAME, ["MNIST"])


def test_mismatched_architecture(roots):
    deeper = {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "layers": 3}}
    with pytest.raises(ck.ArchitectureMismatchError) as e:
        ck.load_checkpoints(roots["checkpoint_root"], TINY_MODEL_NAME, ["MNIST"], model_config=deeper)
    assert e.value.key.startswith("transformer.resblocks.2.") and "zeroshot.pt" in e.value.path
    with pytest.raises(ck.ArchitectureMismatchError) as e:  # the real ViT-B-32 against tiny files
        ck.load_checkpoints(roots["hf_root"], "ViT-B-32", ["MNIST"], hf_name="catlib-tiny-clip")
    assert "config.json" in e.value.path
    with pytest.raises(ck.ArchitectureMismatchError, match="hidden_act"):  # GELU vs QuickGELU
        ck.load_checkpoints(roots["hf_root"], TINY_MODEL_NAME, ["MNIST"], quick_gelu=False)
    with pytest.raises(ck.ArchitectureMismatchError, match="unknown open_clip model"):
        ck.resolve_model_config("no-such-model")


def test_hf_vision_model_as_theta0_needs_projection(roots, tmp_path):
    hf = _copy_root(roots, "hf_root", tmp_path)
    shutil.rmtree(hf / "openai" / "catlib-tiny-clip")
    shutil.copytree(hf / "tanganke" / "catlib-tiny-clip_mnist", hf / "openai" / "catlib-tiny-clip")
    with pytest.raises(ck.ArchitectureMismatchError) as e:
        ck.load_checkpoints(hf, TINY_MODEL_NAME, ["MNIST"])
    assert e.value.key == "visual_projection.weight"


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script / save are deprecated upstream
def test_torchscript_archive_needs_trust(tmp_path):
    model = tiny_clip(3)
    f = tmp_path / "openai-style.pt"
    torch.jit.save(torch.jit.script(model), str(f))
    vs, ts = _shapes()
    with pytest.raises(ck.UntrustedPickleError, match="TorchScript archive") as e:
        ck.read_clip_parts(f, vs, ts)
    assert "--trust-pickle" in str(e.value) and "trust_pickle=True" in str(e.value)
    parts = ck.read_clip_parts(f, vs, ts, trust_pickle=True)
    _assert_same(parts.visual, model.visual.state_dict())
    assert parts.text is not None and torch.equal(parts.text["logit_scale"], model.logit_scale.detach())


def test_non_state_dict_content(tmp_path):
    f = tmp_path / "list.pt"
    torch.save([1, 2, 3], f)
    vs, ts = _shapes()
    with pytest.raises(ck.CheckpointError, match="not a state dict"):
        ck.read_clip_parts(f, vs, ts)
    with pytest.raises(ck.CheckpointNotFoundError):
        ck.read_file(tmp_path / "absent.pt")


# ------------------------------------------------------------------------------------------------------------
# zero-shot heads
# ------------------------------------------------------------------------------------------------------------
def test_head_formula_matches_task_vectors(roots):
    model = roots["base"]
    names, templates = ["banded", "blotchy", "braided"], TEMPLATES["DTD"]
    head = zs.build_head(model, zs.make_tokenizer(TINY_MODEL_NAME, TINY_CONFIG), names, templates)
    ref = task_vectors_head_weights(model, names, templates)
    assert torch.allclose(head.weight, ref, atol=1e-5)
    f = torch.randn(4, 16)
    logits = head(f)
    expected = model.logit_scale.exp() * F.normalize(f, dim=-1) @ (ref / model.logit_scale.exp()).T
    assert logits.shape == (4, 3) and torch.allclose(logits, expected, atol=1e-4)


def test_head_cache_is_keyed_and_validated(roots, tmp_path, monkeypatch):
    text = ck.split_openclip(roots["base"].state_dict())[1]
    classes, templates = {"MNIST": CLASS_NAMES["MNIST"]}, {"MNIST": TEMPLATES["MNIST"]}
    h1 = zs.zeroshot_heads(text, TINY_MODEL_NAME, TINY_CONFIG, classes, templates, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("should have used the cache")

    monkeypatch.setattr(zs, "build_head", boom)
    h2 = zs.zeroshot_heads(text, TINY_MODEL_NAME, TINY_CONFIG, classes, templates, cache_dir=tmp_path)
    assert torch.equal(h1["MNIST"].weight, h2["MNIST"].weight)
    monkeypatch.undo()
    # other class names or other text weights -> other key -> a new file
    zs.zeroshot_heads(text, TINY_MODEL_NAME, TINY_CONFIG, {"MNIST": list("abcdefghij")}, templates, cache_dir=tmp_path)
    text2 = dict(text)
    text2["ln_final.weight"] = text["ln_final.weight"] + 1
    zs.zeroshot_heads(text2, TINY_MODEL_NAME, TINY_CONFIG, classes, templates, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    # a damaged cache file is ignored (with a warning) and rebuilt
    files[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="head cache"):
        h3 = zs.zeroshot_heads(text, TINY_MODEL_NAME, TINY_CONFIG, classes, templates, cache_dir=tmp_path)
    assert torch.allclose(h3["MNIST"].weight, h1["MNIST"].weight)
    with pytest.warns(UserWarning, match="does not match"):
        assert zs.load_cached_head(files[0], "wrong-key", 10) is None
