"""Tests of the feature analysis (paper Sec. 3.1): similarity measures, encoders, t-SNE, outputs.

Tiny random encoders and small generated images keep the whole file fast on CPU.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clipdenoise.analysis import (
    AnalysisConfig,
    CLIPFeatureExtractor,
    HookFeatureExtractor,
    ImageNetResNet,
    analyze_tsne,
    cosine_similarity,
    embed_tsne,
    feature_cka,
    gaussian_std_spec,
    linear_cka,
    load_feature_extractor,
    load_imagenet_resnet,
    parse_encoder_spec,
    run_analysis,
    separation_score,
)
from clipdenoise.analysis.corruption import noise_id, noise_label
from clipdenoise.analysis.tsne import reduce_feature
from clipdenoise.encoder import CLIPResNetEncoder
from clipdenoise.errors import ConfigError, WeightsMismatchError, WeightsNotFoundError
from clipdenoise.noise import NoiseSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ similarity measures
def _naive_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA through HSIC with the centring matrix H (Kornblith et al. 2019, Eq. 3 / linear)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


matrix_shapes = st.tuples(st.integers(4, 24), st.integers(1, 12), st.integers(1, 12))


@settings(max_examples=25, deadline=None)
@given(shape=matrix_shapes, seed=st.integers(0, 2**16))
def test_cka_is_one_for_identical_inputs(shape, seed):
    n, p, _ = shape
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, p)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    shape=matrix_shapes,
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(shape, seed, scale):
    n, p, q = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = x[:, :1] @ rng.normal(size=(1, q)) + 0.5 * rng.normal(size=(n, q))
    rotation, _ = np.linalg.qr(rng.normal(size=(p, p)))  # a random orthogonal matrix
    reference = linear_cka(torch.from_numpy(x), torch.from_numpy(y))
    transformed = linear_cka(torch.from_numpy(scale * x @ rotation), torch.from_numpy(y))
    assert transformed == pytest.approx(reference, abs=1e-9)
    assert reference == pytest.approx(_naive_cka(x, y), abs=1e-9)
    assert 0.0 <= reference <= 1.0 + 1e-12


def test_cka_feature_and_gram_forms_agree():
    rng = np.random.default_rng(3)
    wide = rng.normal(size=(6, 40))  # n < p: Gram form
    tall = rng.normal(size=(40, 6))  # n > p: feature-space form
    for x in (wide, tall):
        y = x + 0.3 * rng.normal(size=x.shape)
        assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
            _naive_cka(x, y), abs=1e-10
        )


@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 64), seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_cosine_similarity_is_symmetric_and_scale_invariant(size, seed, scale):
    rng = np.random.default_rng(seed)
    a, b = (torch.from_numpy(rng.normal(size=size)) for _ in range(2))
    value = cosine_similarity(a, b)
    assert value == pytest.approx(cosine_similarity(b, a), abs=1e-12)
    assert value == pytest.approx(cosine_similarity(scale * a, b), abs=1e-9)
    assert -1.0 - 1e-12 <= value <= 1.0 + 1e-12


def test_cosine_similarity_values():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert cosine_similarity(x, x) == pytest.approx(1.0, abs=1e-12)
    assert cosine_similarity(x, -x) == pytest.approx(-1.0, abs=1e-12)
    assert cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == 0.0
    assert math.isnan(cosine_similarity(torch.zeros(3), torch.ones(3)))
    with pytest.raises(ValueError, match="equal sizes"):
        cosine_similarity(torch.ones(3), torch.ones(4))


def test_feature_cka_subsampling_uses_same_positions():
    feature = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    assert feature_cka(feature, feature, max_positions=50, generator=generator) == pytest.approx(
        1.0, abs=1e-12
    )
    noisy = feature + 0.5 * torch.randn(feature.shape, generator=generator)
    full = feature_cka(feature, noisy)
    sampled = feature_cka(feature, noisy, max_positions=512, generator=generator)
    assert sampled == pytest.approx(full, abs=0.05)


def test_paper_gaussian_units():
    assert gaussian_std_spec(0.1) == NoiseSpec("gaussian", 25.5)
    assert gaussian_std_spec(0.5) == NoiseSpec("gaussian", 127.5)
    assert noise_label(gaussian_std_spec(0.1)) == "Gaussian std 0.1 (σ₂₅₅=25.5)"
    assert noise_id(NoiseSpec("poisson", 3.5)) == "poisson:3.5"


# ------------------------------------------------------------------ encoders
def test_parse_encoder_spec_forms():
    assert parse_encoder_spec("RN50").weights == "openai"
    random = parse_encoder_spec("RN50x64:random")
    assert (random.kind, random.arch, random.weights) == ("clip", "RN50x64", None)
    assert "control" in random.display_label
    assert parse_encoder_spec("RN101:/w/rn101.pt").weights == "/w/rn101.pt"
    labelled = parse_encoder_spec("imagenet:/w/r50.pth@ResNet-50 ImageNet")
    assert (labelled.kind, labelled.weights, labelled.label) == (
        "imagenet",
        "/w/r50.pth",
        "ResNet-50 ImageNet",
    )
    assert parse_encoder_spec("checkpoint:my-model").kind == "checkpoint"
    assert parse_encoder_spec("avgpool").kind == "avgpool"
    with pytest.raises(ConfigError, match="cannot parse encoder 'RN18'"):
        parse_encoder_spec("RN18")
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_encoder_spec("imagenet:")


def test_missing_clip_weights_file_is_a_clear_error(analysis_images, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.pt"):
        load_feature_extractor(f"RN50:{tmp_path / 'nope.pt'}", features=("F1",))
    config = AnalysisConfig(inputs=("x.png",), encoders=(f"RN50:{tmp_path / 'nope.pt'}",))
    with pytest.raises(WeightsNotFoundError, match="--encoder RN50:random analyses"):
        run_analysis(config, tmp_path / "out", images=analysis_images)
    assert not (tmp_path / "out" / "similarity_records.csv").exists()


def test_random_init_clip_encoder_is_seeded_and_trimmed():
    first = load_feature_extractor("RN50:random", features=("F1", "F2"), seed=1)
    again = load_feature_extractor("RN50:random", features=("F1", "F2"), seed=1)
    assert first.feature_names == ("F1", "F2") and first.control
    assert not hasattr(first.encoder, "layer2")  # stages deeper than F2 are not built
    assert torch.equal(first.encoder.conv1.weight, again.encoder.conv1.weight)
    features = first(torch.rand(1, 3, 32, 32))
    assert [tuple(f.shape) for f in features] == [(1, 64, 16, 16), (1, 256, 8, 8)]
    normalized = load_feature_extractor(
        "RN50:random", features=("F1",), seed=1, clip_normalize=True
    )
    assert normalized.encoder.normalize and not first.encoder.normalize


def test_clip_weights_file_is_loaded_into_the_trunk(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    source = CLIPResNetEncoder((3, 4, 6, 3), 64, features=("F1",))  # RN50 stem only: small
    weights = {f"visual.{k}": v for k, v in source.state_dict().items()}
    save_file(weights, tmp_path / "rn50-stem.safetensors")
    extractor = load_feature_extractor(
        f"RN50:{tmp_path / 'rn50-stem.safetensors'}", features=("F1",)
    )
    assert extractor.label == "CLIP RN50 (rn50-stem.safetensors)" and not extractor.control
    torch.testing.assert_close(extractor.encoder.conv3.weight, source.conv3.weight)
    image = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(extractor(image)[0], source.eval()(image)[0])


def test_torchvision_layout_resnet50_matches_torchvision():
    model = ImageNetResNet((3, 4, 6, 3))
    # torchvision.models.resnet50(): 25,557,032 parameters, 320 state-dict entries
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    state = model.state_dict()
    assert len(state) == 320
    assert tuple(state["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)
    assert tuple(state["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1)
    assert tuple(state["fc.weight"].shape) == (1000, 2048)
    assert model.layer2[0].conv2.stride == (2, 2)  # v1.5: stride on the 3x3 conv


def test_imagenet_resnet_loads_strictly_and_extracts_features(tmp_path):
    torch.manual_seed(0)
    source = ImageNetResNet((1, 1, 1, 1), num_classes=10).eval()
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = load_imagenet_resnet(path)
    assert loaded.layers == (1, 1, 1, 1) and loaded.fc.out_features == 10
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(image), source(image))
    extractor = load_feature_extractor(f"imagenet:{path}@r-tiny")
    assert extractor.label == "r-tiny"
    features = extractor(image)
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32),
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
        (2048, 2, 2),
    ]
    normalized = (image - extractor.mean) / extractor.std
    with torch.no_grad():
        expected = source.forward_features(normalized)
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want)

    broken = source.state_dict()
    del broken["layer1.0.bn2.weight"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(WeightsMismatchError, match=r"1 missing: layer1\.0\.bn2\.weight"):
        load_imagenet_resnet(tmp_path / "broken.pth")


def test_hook_extractor_stops_after_the_deepest_feature():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.second = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            x = self.second(torch.relu(self.first(x)))
            raise AssertionError("the head must not run")

    extractor = HookFeatureExtractor(Net(), {"A": "first", "B": "second"}, label="net")
    features = extractor(torch.rand(2, 3, 16, 16))
    assert [tuple(f.shape) for f in features] == [(2, 4, 16, 16), (2, 4, 8, 8)]
    with pytest.raises(ConfigError, match="no submodule named missing"):
        HookFeatureExtractor(Net(), {"A": "missing"}, label="net")


def test_module_extractor_reads_list_and_dict_outputs():
    from clipdenoise.analysis import ModuleFeatureExtractor

    torch.manual_seed(0)
    trunk = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F2", "F3")).eval()
    image = torch.rand(1, 3, 32, 32)
    expected = trunk(image)
    picked = ModuleFeatureExtractor(trunk, ["shallow", "deep"], label="trunk", select=[0, 2])
    got = picked(image)
    assert picked.feature_names == ("shallow", "deep")
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[2])

    class DictNet(torch.nn.Module):
        def forward(self, x):
            return {"a": x, "b": torch.nn.functional.avg_pool2d(x, 2)}

    extractor = ModuleFeatureExtractor(
        DictNet(), ["b"], label="dict", mean=[0.5] * 3, std=[0.5] * 3
    )
    torch.testing.assert_close(
        extractor(image)[0], torch.nn.functional.avg_pool2d((image - 0.5) / 0.5, 2)
    )
    with pytest.raises(RuntimeError, match="output has keys a, b, not c"):
        ModuleFeatureExtractor(DictNet(), ["c"], label="dict")(image)


def test_restormer_encoder_levels_as_scales(tmp_path):
    from clipdenoise.baselines import build_baseline, save_baseline

    torch.manual_seed(0)
    network = build_baseline("restormer", dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
    path = save_baseline(network.eval(), tmp_path / "restormer.safetensors")
    extractor = load_feature_extractor(f"restormer:{path}")  # F5 asked, not available: dropped
    assert extractor.feature_names == ("F1", "F2", "F3", "F4")
    assert extractor.label == "Restormer encoder (restormer)" and extractor.input_multiple == 8
    image = torch.rand(1, 3, 32, 32)
    features = extractor(image)
    assert [tuple(f.shape[1:]) for f in features] == [
        (8, 32, 32),
        (16, 16, 16),
        (32, 8, 8),
        (64, 4, 4),
    ]
    with torch.no_grad():
        level1 = network.encoder_level1(network.patch_embed(image))
    torch.testing.assert_close(features[0], level1)
    with pytest.raises(ConfigError, match="a Restormer has scales F1, F2, F3, F4"):
        load_feature_extractor(f"restormer:{path}", features=("F5",))


def test_checkpoint_encoder_matches_the_trained_model(tmp_path, tiny_model):
    from clipdenoise.checkpoints import save_checkpoint

    path = save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
    extractor = load_feature_extractor(f"checkpoint:{path}", features=("F1", "F2", "F3"))
    assert extractor.feature_names == ("F1", "F2", "F3")
    assert extractor.label == "denoiser encoder (tiny)"
    image = torch.rand(1, 3, 32, 32)
    expected = tiny_model.encoder(image)[:3]
    for got, want in zip(extractor(image), expected):
        torch.testing.assert_close(got, want)


# ------------------------------------------------------------------ t-SNE
def test_tsne_shape_reproducibility_and_separation(analysis_images):
    torch.manual_seed(0)
    encoder = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F3"))
    extractor = CLIPFeatureExtractor(encoder, label="tiny random", control=True)
    noise = gaussian_std_spec(0.1)
    options = {"draws": 3, "max_dim": 512, "max_iter": 250}
    result = analyze_tsne(analysis_images, extractor, noise, seed=5, **options)
    assert result.images == ["img0", "img1", "img2"]
    assert len(result.draw) == 3 * 4 and (result.draw == -1).sum() == 3
    assert [s.scale for s in result.scales] == ["F1", "F3"]
    for scale in result.scales:
        assert scale.embedding.shape == (12, 2) and np.isfinite(scale.embedding).all()
        assert scale.dim <= 512
        assert -1.0 <= scale.silhouette_embedding <= 1.0
    again = analyze_tsne(analysis_images, extractor, noise, seed=5, **options)
    other = analyze_tsne(analysis_images, extractor, noise, seed=6, **options)
    for a, b, c in zip(result.scales, again.scales, other.scales):
        np.testing.assert_array_equal(a.embedding, b.embedding)
        assert not np.allclose(a.embedding, c.embedding)


def test_embed_tsne_and_silhouette_on_known_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10.0, size=(3, 20))
    labels = np.repeat(np.arange(3), 6)
    points = centers[labels] + 0.1 * rng.normal(size=(18, 20))
    embedding = embed_tsne(points, seed=0)
    assert embedding.shape == (18, 2)
    np.testing.assert_array_equal(embedding, embed_tsne(points, seed=0))
    assert separation_score(points, labels) > 0.95
    assert separation_score(embedding, labels) > 0.8
    assert math.isnan(separation_score(points, np.zeros(18)))
    with pytest.raises(ValueError, match="perplexity"):
        embed_tsne(points, perplexity=18)


def test_reduce_feature_bounds_the_vector_length():
    feature = torch.arange(8 * 16 * 16, dtype=torch.float32).reshape(8, 16, 16)
    positions = torch.tensor([0, 5, 17])
    assert reduce_feature(feature, None).shape == (2048,)
    assert reduce_feature(feature, 100, "subsample", positions).shape == (24,)
    pooled = reduce_feature(feature, 128, "pool")
    assert pooled.size <= 128 and pooled.size == 8 * 16


# ------------------------------------------------------------------ outputs and CLI
def test_run_analysis_writes_tables_json_and_figures(tmp_path, analysis_images):
    config = AnalysisConfig(
        inputs=("generated",),
        encoders=("avgpool", "avgpool@pooling twin"),
        gaussian_stds=(0.3,),
        noises=("poisson:3.5",),
        draws=2,
        scales=("F1", "F2"),
        tsne=True,
        tsne_draws=3,
        tsne_max_dim=256,
        tsne_max_iter=250,
    )
    report = run_analysis(config, tmp_path, images=analysis_images)
    with open(tmp_path / "similarity_records.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * 2 * 3 * 2 * 2 * 2  # encoders, noises, images, draws, scales, metrics
    assert {row["noise"] for row in rows} == {"gaussian:76.5", "poisson:3.5"}
    payload = json.loads((tmp_path / "analysis.json").read_text())
    assert payload["encoders"] == ["average-pool pyramid (control)", "pooling twin"]
    assert len(payload["similarity_summary"]) == 2 * 2 * 2 * 2
    assert len(payload["tsne"]) == 2 * 2  # encoders x the paper's two t-SNE levels
    figures = report.files["figures"]
    names = {path.name for path in figures}
    assert "similarity_cosine_by_noise_average-pool-pyramid-control.png" in names
    assert "similarity_cka_by_encoder_poisson-3-5.png" in names
    assert "tsne_pooling-twin_gaussian-51.png" in names
    assert "noisy_examples.png" in names
    for path in figures:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, path
    with open(tmp_path / "tsne_scores.csv") as stream:
        scores = list(csv.DictReader(stream))
    assert len(scores) == 2 * 2 * 2
    assert all(-1 <= float(row["silhouette_embedding"]) <= 1 for row in scores)


def test_cli_help_documents_the_command(capsys):
    from clipdenoise.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--gaussian-std", "--encoder", "RN50:random", "--tsne", "CKA", "std on [0, 1]"):
        assert needle in text


def test_cli_runs_and_reports_unreadable_files(tmp_path, make_image, capsys):
    from PIL import Image

    from clipdenoise.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(2):
        pixels = (make_image(48, 64, seed=index) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"good{index}.png")
    (folder / "bad.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((3, 40, 3), np.uint8)).save(folder / "sliver.png")  # < stride 4
    out = tmp_path / "out"
    code = main(
        [
            "analyze", str(folder), "--encoder", "avgpool", "--gaussian-std", "0.2",
            "--scales", "F1", "F2", "--no-figures", "--out", str(out),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "bad.png" in captured.err and "2 image(s) could not be read" in captured.err
    assert "sliver: image is 40x3, smaller than the stride 4 of the deepest scale" in captured.err
    assert "cosine — average-pool pyramid (control)" in captured.out
    with open(out / "similarity_summary.csv") as stream:
        summary = list(csv.DictReader(stream))
    assert len(summary) == 2 * 2
    assert all(0.5 < float(row["mean"]) < 1.0 for row in summary)
    assert not list(out.glob("*.png"))
    code = main(["analyze", str(folder / "bad.png"), "--encoder", "avgpool", "--out", str(out)])
    assert code == 2
    assert "no readable image" in capsys.readouterr().err


def test_cli_config_file_reruns_with_overrides(tmp_path, make_image):
    from PIL import Image

    from clipdenoise.analysis.runner import AnalysisConfig
    from clipdenoise.cli import main
    from clipdenoise.config import load_toml

    image_path = tmp_path / "one.png"
    Image.fromarray((make_image(32, 32) * 255).round().astype(np.uint8)).save(image_path)
    first = tmp_path / "first"
    arguments = ["analyze", str(image_path), "--encoder", "avgpool", "--scales", "F1"]
    arguments += ["--noise", "speckle:0.03", "--tsne-max-dim", "0", "--no-figures", "-q"]
    assert main([*arguments, "--out", str(first)]) == 0
    saved = load_toml(AnalysisConfig, first / "analysis_config.toml")
    assert saved.noises == ("speckle:0.03",) and saved.tsne_max_dim == 0 and not saved.figures
    second = tmp_path / "second"
    config = str(first / "analysis_config.toml")
    assert main(["analyze", "--config", config, "--draws", "3", "-q", "--out", str(second)]) == 0
    rerun = load_toml(AnalysisConfig, second / "analysis_config.toml")
    assert rerun.inputs == (str(image_path),) and rerun.draws == 3
    with open(second / "similarity_records.csv") as stream:
        assert len(list(csv.DictReader(stream))) == 3 * 2  # draws x metrics


def test_image_preparation_converts_channels_and_crops_to_the_stride(make_image):
    from clipdenoise.analysis.images import crop_to_multiple, to_tensor

    colour = make_image(50, 70)
    grey = colour.mean(axis=2, keepdims=True)
    assert tuple(to_tensor(grey, 3).shape) == (1, 3, 50, 70)
    assert torch.equal(to_tensor(grey, 3)[0, 0], to_tensor(grey, 3)[0, 2])
    luma = to_tensor(colour, 1)[0, 0]
    expected = 0.299 * colour[..., 0] + 0.587 * colour[..., 1] + 0.114 * colour[..., 2]
    np.testing.assert_allclose(luma.numpy(), expected, atol=1e-6)
    image = to_tensor(colour, 3)
    cropped = crop_to_multiple(image, 32)
    assert tuple(cropped.shape[-2:]) == (32, 64)
    assert torch.equal(cropped, image[..., 9:41, 3:67])  # centred
    assert tuple(crop_to_multiple(image, 16, 40).shape[-2:]) == (32, 32)
    with pytest.raises(ValueError, match="smaller than the encoder's stride 64"):
        crop_to_multiple(image, 64)
