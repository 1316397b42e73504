import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gansr_ext.data import HROnlyDataset, PairedImageDataset, make_lr, sample_images, write_image
from gansr_ext.data import write_sample_folders
from gansr_ext.data.datasets import UnreadableImageWarning, _lr_stem_key


def _smooth(h, w, seed):
    rng = np.random.default_rng(seed)
    return np.clip(F.interpolate(torch.from_numpy(rng.random((1, 3, h // 4 + 2, w // 4 + 2))), size=(h, w),
                                 mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy(), 0, 1)


def _locate(patch: np.ndarray, img: np.ndarray):
    """(top, left) where `patch` occurs in `img` (exhaustive search)."""
    ph, pw = patch.shape[:2]
    for t in range(img.shape[0] - ph + 1):
        for l_ in range(img.shape[1] - pw + 1):
            if np.array_equal(img[t: t + ph, l_: l_ + pw], patch):
                return t, l_
    raise AssertionError("patch not found")


def test_hr_only_crop_equals_lr_of_whole_image():
    hr = np.random.default_rng(0).random((45, 38, 3)).astype(np.float32)  # modcrop -> 44 x 36
    ds = HROnlyDataset([("x", hr)], scale=4, crop=16, augment=False, seed=1)
    lr_whole = make_lr(hr, 4)
    positions = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["name"] == "x" and item["lr"].shape == (3, 4, 4) and item["hr"].shape == (3, 16, 16)
        assert item["lr"].dtype == torch.float32
        hr_crop = item["hr"].permute(1, 2, 0).numpy()
        top, left = _locate(hr_crop, hr)
        assert top % 4 == 0 and left % 4 == 0
        positions.add((top, left))
        np.testing.assert_allclose(item["lr"].permute(1, 2, 0).numpy(),
                                   lr_whole[top // 4: top // 4 + 4, left // 4: left // 4 + 4], atol=1e-5)
    assert len(positions) > 1


def _box_lr(hr, s):
    h, w = hr.shape[0] // s, hr.shape[1] // s
    return hr[: h * s, : w * s].reshape(h, s, w, s, 3).mean(axis=(1, 3))


@pytest.fixture
def paired_dirs(tmp_path):
    # LR = box average of HR, stored losslessly (16-bit), so alignment can be checked exactly
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    for k, (h, w) in enumerate([(24, 28), (26, 25)]):
        hr = np.round(_smooth(h, w, k) * 65535).astype(np.uint16)
        write_image(hr_dir / f"im{k}.png", hr, bit_depth=16)
        lr = np.round(_box_lr(hr.astype(np.float64), 2)).astype(np.uint16)
        write_image(lr_dir / f"im{k}x2.png", lr, bit_depth=16)
    return hr_dir, lr_dir


def test_paired_crops_stay_aligned_under_augmentation(paired_dirs):
    ds = PairedImageDataset(*paired_dirs, scale=2, crop=8, augment=True, seed=3)
    assert len(ds) == 2
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(2):
            item = ds[i]
            assert item["name"] == f"im{i}"
            assert item["lr"].shape == (3, 4, 4) and item["hr"].shape == (3, 8, 8)
            pooled = F.avg_pool2d(item["hr"][None].double(), 2)[0]
            torch.testing.assert_close(pooled, item["lr"].double(), atol=2e-5, rtol=0)


def test_paired_validation_mode_gives_whole_modcropped_image(paired_dirs):
    ds = PairedImageDataset(*paired_dirs, scale=2, crop=None, augment=False, seed=0)
    item = ds[1]  # HR 26 x 25 -> 26 x 24, LR 13 x 12
    assert item["hr"].shape == (3, 26, 24) and item["lr"].shape == (3, 13, 12)


def test_augmentation_reaches_all_eight_symmetries():
    img = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3) / 48
    ds = HROnlyDataset([img], scale=2, crop=4, augment=True, seed=0)
    seen = set()
    for epoch in range(64):
        ds.set_epoch(epoch)
        seen.add(ds[0]["hr"].numpy().tobytes())
    assert len(seen) == 8


def test_determinism_seed_epoch_index():
    imgs = [_smooth(40, 40, k).astype(np.float32) for k in range(3)]
    a = HROnlyDataset(imgs, scale=4, crop=16, seed=7)
    b = HROnlyDataset(imgs, scale=4, crop=16, seed=7)
    b.set_epoch(1)
    b.set_epoch(0)
    for i in range(3):
        torch.testing.assert_close(a[i]["hr"], b[i]["hr"])
        torch.testing.assert_close(a[i]["lr"], b[i]["lr"])
    reordered = [b[i]["hr"] for i in (2, 0, 1)]  # access order does not matter
    for j, i in enumerate((2, 0, 1)):
        torch.testing.assert_close(a[i]["hr"], reordered[j])
    a.set_epoch(1)
    assert any(not torch.equal(a[i]["hr"], b[i]["hr"]) for i in range(3))
    c = HROnlyDataset(imgs, scale=4, crop=16, seed=8)
    assert any(not torch.equal(c[i]["hr"], b[i]["hr"]) for i in range(3))
    # seed drawn from a generator: reproducible from the generator's seed
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert HROnlyDataset(imgs, generator=g1).seed == HROnlyDataset(imgs, generator=g2).seed


def test_dataloader_workers_give_the_same_batches():
    imgs = [_smooth(24, 24, k).astype(np.float32) for k in range(4)]
    ds = HROnlyDataset(imgs, scale=2, crop=8, seed=11)
    ds.set_epoch(3)
    runs = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers)
        runs.append(torch.cat([b["hr"] for b in loader]))
    torch.testing.assert_close(runs[0], runs[1])


def test_unreadable_files_are_reported_and_skipped(tmp_path):
    write_image(tmp_path / "good.png", _smooth(16, 16, 0))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    ds = HROnlyDataset(tmp_path, scale=2, crop=8, seed=0)
    assert len(ds) == 2  # bad.png sorts first
    with pytest.warns(UnreadableImageWarning, match="bad.png"):
        item = ds[0]
    assert item["name"] == "good"
    assert ds[1]["name"] == "good"
    (tmp_path / "good.png").write_bytes(b"now broken too")
    ds2 = HROnlyDataset(tmp_path, scale=2, crop=8, seed=0)
    with pytest.warns(UnreadableImageWarning), pytest.raises(RuntimeError, match="none of the 2 images"):
        ds2[0]


def test_paired_mismatch_and_missing_lr_are_reported(tmp_path):
    write_image(tmp_path / "HR" / "a.png", _smooth(16, 16, 0))
    write_image(tmp_path / "LR" / "a_x2.png", _smooth(5, 8, 0))  # wrong size for x2
    write_image(tmp_path / "HR" / "b.png", _smooth(16, 16, 1))
    write_image(tmp_path / "LR" / "b.png", _smooth(8, 8, 1))
    write_image(tmp_path / "HR" / "c.png", _smooth(16, 16, 2))  # no LR
    with pytest.warns(UnreadableImageWarning, match="c.png"):
        ds = PairedImageDataset(tmp_path / "HR", tmp_path / "LR", scale=2, crop=8, seed=0)
    assert len(ds) == 2
    with pytest.warns(UnreadableImageWarning, match="does not match"):
        assert ds[0]["name"] == "b"


def test_lr_stem_matching():
    assert _lr_stem_key("0001x4", 4) == "0001"
    assert _lr_stem_key("baby_x4", 4) == "baby"
    assert _lr_stem_key("img_001_LR", 4) == "img_001"
    assert _lr_stem_key("butterfly_LRx4", 4) == "butterfly"
    assert _lr_stem_key("0001x2", 4) == "0001x2"  # another scale's file is not this scale's LR


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple of scale"):
        HROnlyDataset([np.zeros((8, 8, 3))], scale=4, crop=10)
    with pytest.raises(ValueError, match="scale"):
        HROnlyDataset([np.zeros((8, 8, 3))], scale=0)
    with pytest.raises(ValueError, match="empty"):
        HROnlyDataset([])
    with pytest.raises(ValueError, match="shape"):
        HROnlyDataset([np.zeros((8, 8, 5))])
    with pytest.raises(IndexError):
        HROnlyDataset([np.zeros((8, 8, 3))], scale=2, crop=4)[1]


def test_sample_images_and_folders(tmp_path):
    train, val = sample_images("train"), sample_images("val")
    assert len(val) == 3 and len(train) >= 6
    assert not {n for n, _ in train} & {n for n, _ in val}
    assert [n for n, _ in sample_images("all")] == [n for n, _ in train + val]
    for name, img in train + val:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert min(img.shape[:2]) >= 256, name
        assert img.std() > 10, name  # a real photo, not a blank array
    with pytest.raises(ValueError, match="split"):
        sample_images("test")
    val_ds = HROnlyDataset(val, scale=4, crop=None, augment=False)
    assert val_ds[0]["hr"].shape[1] % 4 == 0


def test_write_sample_folders(tmp_path):
    train_dir, val_dir = write_sample_folders(tmp_path)
    names = {p.stem for p in val_dir.iterdir()}
    assert names == {n for n, _ in sample_images("val")}
    ds = HROnlyDataset(val_dir, scale=4, crop=64, seed=0)
    assert len(ds) == 3 and ds[0]["lr"].shape == (3, 16, 16)
    assert len(list(train_dir.iterdir())) == len(sample_images("train"))


def test_hr_only_accepts_uint8_and_gray_arrays_like_float():
    u8 = np.random.default_rng(4).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    a = HROnlyDataset([u8], scale=2, crop=8, seed=2)[0]
    b = HROnlyDataset([u8.astype(np.float32) / 255], scale=2, crop=8, seed=2)[0]
    torch.testing.assert_close(a["hr"], b["hr"])
    torch.testing.assert_close(a["lr"], b["lr"])  # LR from float data, not rounded to 8 bits
    gray = HROnlyDataset([u8[:, :, 0]], scale=2, crop=None, augment=False)[0]
    assert gray["hr"].shape == (3, 20, 24)
    torch.testing.assert_close(gray["hr"][0], gray["hr"][2])
