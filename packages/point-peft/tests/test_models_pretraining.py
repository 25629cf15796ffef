"""Point-MAE pre-training: masking, visible-only encoder, reconstruction loss, learning, export."""

from __future__ import annotations

import pytest
import torch

from point_peft.models import (
    PointMAE,
    PointMAEPretrainer,
    PointTransformerConfig,
    chamfer_l2,
    load_pretrained,
    random_patch_mask,
)


def tiny_config(**overrides) -> PointTransformerConfig:
    values = {
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "num_groups": 10,
        "group_size": 8,
        "patch_hidden_dims": (8, 16),
        "pos_hidden_dim": 16,
        "decoder_depth": 1,
        "decoder_num_heads": 2,
        "drop_path_rate": 0.0,
        "num_classes": 3,
    }
    return PointTransformerConfig(**{**values, **overrides})


def clouds(batch=4, points=96, seed=0) -> torch.Tensor:
    return torch.rand(batch, points, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_random_patch_mask_has_exactly_the_requested_count_and_follows_the_seed():
    mask = random_patch_mask(64, 10, 6, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool
    assert mask.shape == (64, 10)
    assert mask.sum(dim=1).tolist() == [6] * 64
    again = random_patch_mask(64, 10, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    other = random_patch_mask(64, 10, 6, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(mask, other)
    torch.manual_seed(5)
    global_first = random_patch_mask(8, 10, 6)
    torch.manual_seed(5)
    assert torch.equal(random_patch_mask(8, 10, 6), global_first)  # global RNG without generator


def test_random_patch_mask_is_uniform_over_patches():
    mask = random_patch_mask(20_000, 10, 6, generator=torch.Generator().manual_seed(0))
    frequency = mask.double().mean(dim=0)
    assert torch.all((frequency - 0.6).abs() < 0.02), frequency


def test_mask_ratio_is_the_official_int_of_ratio_times_groups():
    assert PointMAEPretrainer(tiny_config(num_groups=64)).num_masked == 38  # int(0.6 · 64)
    assert PointMAEPretrainer(tiny_config(num_groups=10, mask_ratio=0.75)).num_masked == 7
    with pytest.raises(ValueError, match="masks 0 of num_groups=10 patches"):
        PointMAEPretrainer(tiny_config(mask_ratio=0.05))


def test_forward_shapes_and_mask():
    model = PointMAEPretrainer(tiny_config())
    out = model(clouds(), generator=torch.Generator().manual_seed(0))
    assert out.loss.shape == ()
    assert out.predicted.shape == out.target.shape == (4, 6, 8, 3)
    assert out.mask.shape == (4, 10)
    assert out.mask.sum(dim=1).tolist() == [6] * 4
    assert out.centers.shape == (4, 10, 3)


def test_encoder_sees_only_visible_tokens_and_no_cls_token():
    model = PointMAEPretrainer(tiny_config())
    seen = []
    model.MAE_encoder.blocks.blocks[0].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].shape)
    )
    model(clouds())
    assert seen == [torch.Size([4, 4, 32])]  # 10 patches, 6 masked, no cls token
    assert model.MAE_encoder.cls_token is None


def test_loss_equals_a_reference_computation():
    """Rebuild the official forward from the pieces, in eval mode, and compare the loss."""
    torch.manual_seed(0)
    model = PointMAEPretrainer(tiny_config()).double().eval()
    points = clouds().double()
    out = model(points, generator=torch.Generator().manual_seed(3))
    mask = random_patch_mask(4, 10, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.mask, mask)

    encoder = model.MAE_encoder
    centers, neighborhoods, _ = encoder.group(points)
    tokens = encoder.encoder(neighborhoods)
    x = tokens[~mask].reshape(4, 4, -1)
    vis_centers, mask_centers = centers[~mask].reshape(4, 4, 3), centers[mask].reshape(4, 6, 3)
    pos = encoder.pos_embed(vis_centers)
    for block in encoder.blocks.blocks:
        x = block(x + pos)
    x = encoder.norm(x)
    x = torch.cat([x, model.mask_token.expand(4, 6, -1)], dim=1)
    pos = torch.cat(
        [model.decoder_pos_embed(vis_centers), model.decoder_pos_embed(mask_centers)], 1
    )
    for block in model.MAE_decoder.blocks:
        x = block(x + pos)
    x = model.MAE_decoder.norm(x[:, -6:])
    conv = model.increase_dim[0]
    predicted = (x @ conv.weight[:, :, 0].T + conv.bias).reshape(4, 6, 8, 3)
    target = neighborhoods[mask].reshape(4, 6, 8, 3)
    expected = chamfer_l2(predicted.reshape(24, 8, 3), target.reshape(24, 8, 3))
    assert torch.allclose(out.predicted, predicted, rtol=1e-10, atol=1e-12)
    assert torch.equal(out.target, target)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-10)


def test_a_few_optimizer_steps_lower_the_loss_on_a_fixed_batch(one_thread):
    torch.manual_seed(0)
    model = PointMAEPretrainer(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    points = clouds(batch=8)
    losses = []
    for _ in range(15):
        # the same mask every step: the batch is fixed, only the weights change
        out = model(points, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    # Better than predicting one average patch shape for every masked patch: the decoder uses
    # what it is told about each patch, not only the shrinking of its initial output scale.
    target = out.target.reshape(-1, 8, 3)
    average_shape = chamfer_l2(target.mean(dim=0, keepdim=True).expand_as(target), target)
    assert losses[-1] < 0.85 * average_shape.item(), (losses, average_shape.item())


def test_state_dict_is_an_official_pretrain_file_that_point_mae_loads(tmp_path):
    torch.manual_seed(0)
    config = tiny_config()
    pretrainer = PointMAEPretrainer(config)
    pretrainer(clouds())  # BatchNorm running statistics move away from their defaults
    path = tmp_path / "pretrain.pth"
    torch.save(pretrainer.to_official_checkpoint(), path)
    model, report = PointMAE.from_pretrained(path, config=config, output_loading_info=True)
    assert report.kind == "point_mae_pretrain"
    assert report.missing_keys[:2] == ["cls_token", "cls_pos"]
    assert all(key.startswith("cls_head_finetune.") for key in report.missing_keys[2:])
    assert {key.split(".")[0] for key in report.unexpected_keys} == {
        "mask_token",
        "decoder_pos_embed",
        "MAE_decoder",
        "increase_dim",
    }
    encoder_state = pretrainer.MAE_encoder.state_dict()
    model_state = model.state_dict()
    assert len(encoder_state) == len(report.loaded_keys)
    for name, tensor in encoder_state.items():
        assert torch.equal(model_state[name], tensor), name
    # the encoder half computes the same tokens in both models
    model.eval(), pretrainer.eval()
    with torch.no_grad():
        tokens = pretrainer.MAE_encoder.embed(clouds()).tokens
        assert torch.equal(model.embed(clouds()).tokens, tokens)


def test_pretrainer_keys_follow_the_official_names():
    names = list(PointMAEPretrainer(tiny_config()).state_dict())
    assert names[:2] == ["mask_token", "MAE_encoder.encoder.first_conv.0.weight"]
    assert "MAE_decoder.blocks.0.attn.qkv.weight" in names
    assert "MAE_decoder.norm.weight" in names
    assert names[-2:] == ["increase_dim.0.weight", "increase_dim.0.bias"]
    assert not any(name.startswith("MAE_encoder.cls_") for name in names)


def test_a_loaded_encoder_can_also_go_into_a_bare_encoder():
    pretrainer = PointMAEPretrainer(tiny_config())
    target = PointMAEPretrainer(tiny_config()).MAE_encoder
    report = load_pretrained(target, pretrainer.to_official_checkpoint())
    assert report.missing_keys == []
    assert torch.equal(target.norm.weight, pretrainer.MAE_encoder.norm.weight)


def test_decoder_initialisation_is_xavier():
    torch.manual_seed(0)
    model = PointMAEPretrainer(PointTransformerConfig.small())
    weight = model.MAE_decoder.blocks[0].mlp.fc1.weight  # (4·96, 96)
    bound = (6 / (weight.shape[0] + weight.shape[1])) ** 0.5
    assert weight.abs().max().item() <= bound
    assert weight.abs().max().item() > 0.9 * bound
    assert model.mask_token.std().item() == pytest.approx(0.02, rel=0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pretraining_step():
    model = PointMAEPretrainer(tiny_config()).cuda()
    out = model(clouds().cuda(), generator=torch.Generator(device="cuda").manual_seed(0))
    out.loss.backward()
    assert out.mask.device.type == "cuda"
    assert torch.isfinite(out.loss).item()
