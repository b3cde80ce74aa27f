import torch

from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.losses.local_supcon import local_supcon_loss


def _toy(size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(2, size, size, dtype=torch.long)
    labels[:, : size // 2, : size // 2] = 1
    labels[:, size // 2 :, size // 2 :] = 2
    feats = torch.randn(2, 8, size, size, generator=g)
    return feats, labels


def test_features_that_separate_labels_cost_less():
    feats, labels = _toy()
    onehot = torch.nn.functional.one_hot(labels, 8).permute(0, 3, 1, 2).float()
    random_loss = local_supcon_loss(feats, labels, stride=1, block=8)
    clustered_loss = local_supcon_loss(onehot * 5 + 0.01 * feats, labels, stride=1, block=8)
    assert clustered_loss < random_loss


def test_training_pulls_same_label_pixels_together():
    feats, labels = _toy()
    feats.requires_grad_(True)
    opt = torch.optim.Adam([feats], lr=0.1)
    first = None
    for _ in range(60):
        loss = local_supcon_loss(feats, labels, stride=1, block=8)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    f = torch.nn.functional.normalize(feats.detach(), dim=1)
    a = f[0, :, 1, 1]
    same = (a * f[0, :, 2, 3]).sum()
    other = (a * f[0, :, 12, 12]).sum()
    assert loss.item() < first and same > other + 0.5


def test_ignored_pixels_and_background_only_blocks_do_not_count():
    feats, labels = _toy()
    lab = labels.clone()
    lab[:, 0, 0] = IGNORE
    changed = feats.clone()
    changed[:, :, 0, 0] = 100.0
    a = local_supcon_loss(feats, lab, stride=1, block=8)
    b = local_supcon_loss(changed, lab, stride=1, block=8)
    assert torch.isclose(a, b)
    zero = local_supcon_loss(feats, torch.zeros_like(labels), stride=1, block=8)
    assert zero.item() == 0.0


def _peak_saved_elements(size):
    feats = torch.randn(1, 4, size, size, requires_grad=True)
    labels = torch.ones(1, size, size, dtype=torch.long)
    peak = [0]

    def pack(t):
        peak[0] = max(peak[0], t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        local_supcon_loss(feats, labels, stride=4, block=8).backward()
    return peak[0]


def test_memory_grows_linearly_with_the_image_not_with_its_square():
    small, large = _peak_saved_elements(64), _peak_saved_elements(256)
    # 16x the pixels: a naive (HW)^2 loss would need 256x the memory
    assert large <= 16 * small * 1.1
