"""The ``ucr-<Name>`` family adapts its defaults to the set it runs on; the user's overrides win."""

import pytest

from statespaces.data import get_dataset
from statespaces.train.config import load_config
from statespaces.train.recipes import UCR_FAST_DT_MAX, UCR_FAST_MODES_FROM, UCR_TARGET_STEPS, ucr_recipe


@pytest.mark.parametrize(
    "n_train, batch, epochs",
    [
        (16, 8, 300),  # 2 steps per epoch: 500 epochs wanted, capped at 300
        (40, 8, 200),  # GunPoint: 5 steps per epoch
        (159, 16, 100),  # OSULeaf: 159 / 8 = 19.9 -> 16; 10 steps per epoch
        (216, 16, 72),  # JapaneseVowels: 14 steps per epoch
        (5000, 32, 20),  # 157 steps per epoch: 7 epochs wanted, at least 20
    ],
)
def test_ucr_recipe_scales_batch_and_epochs_with_the_training_cases(n_train, batch, epochs):
    recipe = ucr_recipe(n_train, 100, layer_options=False)
    assert recipe == {"data.batch_size": batch, "trainer.max_epochs": epochs, "trainer.monitor": "val/loss"}
    steps = epochs * -(-n_train // batch)
    assert steps >= UCR_TARGET_STEPS or epochs == 300


def test_ucr_recipe_keeps_a_given_batch_size_and_rejects_empty_sets():
    assert ucr_recipe(40, 150, batch_size=4)["trainer.max_epochs"] == 100  # 10 steps per epoch
    with pytest.raises(ValueError, match="n_train >= 1"):
        ucr_recipe(0, 150)


def test_load_config_adapts_ucr_members_to_the_set_actually_used():
    gun = load_config(["experiment=ucr-GunPoint"])
    n = len(get_dataset("ucr/GunPoint").train)
    assert (gun.data.batch_size, gun.trainer.max_epochs, gun.trainer.monitor) == (8, ucr_recipe(n, 150)["trainer.max_epochs"], "val/loss")
    # compare's multi-set runs keep the experiment and change data.name: the recipe follows the data
    vowels = load_config(["experiment=ucr-GunPoint", "data.name=ucr/JapaneseVowels"])
    assert vowels.data.batch_size == ucr_recipe(len(get_dataset("ucr/JapaneseVowels").train), 29)["data.batch_size"] == 16
    # a smaller validation split leaves more training cases, and the recipe sees them
    more = load_config(["experiment=ucr-JapaneseVowels", "data.val_fraction=0.0"])
    assert more.data.batch_size == 32


def test_overrides_win_over_the_recipe_and_named_experiments_are_untouched():
    cfg = load_config(["experiment=ucr-GunPoint", "trainer.max_epochs=7", "trainer.monitor=val/acc", "data.batch_size=4"])
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.trainer.monitor) == (4, 7, "val/acc")
    only_batch = load_config(["experiment=ucr-GunPoint", "data.batch_size=4"])
    assert only_batch.trainer.max_epochs == 100  # the epochs follow the user's batch size
    plain = load_config(["experiment=mnist1d-s4d"])
    assert plain.trainer.monitor is None and plain.data.batch_size == 64


def test_ucr_recipe_gives_the_s4d_layer_faster_modes_from_64_steps_and_baselines_none():
    assert ucr_recipe(40, UCR_FAST_MODES_FROM)["model.layer_options.dt_max"] == UCR_FAST_DT_MAX
    assert "model.layer_options.dt_max" not in ucr_recipe(40, UCR_FAST_MODES_FROM - 1)
    assert "model.layer_options.dt_max" not in ucr_recipe(40, 500, layer_options=False)
    assert load_config(["experiment=ucr-GunPoint"]).model.layer_options.dt_max == UCR_FAST_DT_MAX  # L=150
    assert "dt_max" not in load_config(["experiment=ucr-ItalyPowerDemand"]).model.layer_options  # L=24
    assert load_config(["experiment=ucr-GunPoint", "model.layer_options.dt_max=0.05"]).model.layer_options.dt_max == 0.05
    gru = load_config(["experiment=ucr-GunPoint", "model.layer=gru"])  # a baseline takes no SSM options
    assert "dt_max" not in gru.model.layer_options
    from statespaces.train.compare import _check_layer_options

    _check_layer_options(gru)  # builds
