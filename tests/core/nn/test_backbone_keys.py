"""A backbone has the same layers with and without ImageNet weights, so model files load either way."""

from napari_microstructure.core.nn.backbones import build_backbone


def test_efficientnet_layers_do_not_depend_on_pretraining():
    # a model saved after transfer learning is rebuilt without the ImageNet weights when loaded:
    # the keys must match (the ImageNet classifier _fc is in neither)
    pretrained = build_backbone("efficientnet-lite0", pretrained=True).state_dict()
    scratch = build_backbone("efficientnet-lite0", pretrained=False).state_dict()
    assert set(pretrained) == set(scratch)
    assert not any(k.startswith("_fc.") for k in scratch)
