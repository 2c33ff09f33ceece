import os

import pytest
import torch

os.environ.setdefault("CATLIB_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def tiny_vit(seed: int = 0, width: int = 32, layers: int = 2, output_dim: int = 16):
    """A small open_clip VisionTransformer (the module structure of ViT-B/32)."""
    from open_clip.transformer import VisionTransformer
    torch.manual_seed(seed)
    return VisionTransformer(image_size=16, patch_size=4, width=width, layers=layers, heads=4, mlp_ratio=2,
                             output_dim=output_dim).eval()


def perturbed(sd, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in sd.items()}


@pytest.fixture(scope="session")
def vit_setup():
    """θ0, three fine-tuned state dicts, exemplar batches, heads and labelled batches on a tiny ViT."""
    m = tiny_vit()
    sd0 = {k: v.clone() for k, v in m.state_dict().items()}
    fts = [perturbed(sd0, 0.03, 10 + i) for i in range(3)]
    g = torch.Generator().manual_seed(1)
    ex = [torch.randn(3, 3, 16, 16, generator=g) for _ in range(3)]
    heads = []
    for i in range(3):
        torch.manual_seed(100 + i)
        heads.append(torch.nn.Linear(16, 5).eval())
    labelled = [(x, torch.randint(0, 5, (x.shape[0],), generator=g)) for x in ex]
    return dict(module=m, pretrained=sd0, finetuned=fts, exemplars=ex, heads=heads, labelled=labelled)


@pytest.fixture(scope="session")
def roots(tmp_path_factory):
    """Stand-in checkpoint and dataset roots in every real on-disk layout (generated, never committed)."""
    from standins import make_standin_roots
    return make_standin_roots(tmp_path_factory.mktemp("standins"))
