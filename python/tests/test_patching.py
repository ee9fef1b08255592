"""``glassbox.patching`` against TransformerLens' own activation patching (its results in
``tests/fixtures/analyses/tl-weights-{gpt2,llama}.safetensors``, made by
``make_tl_weights_fixtures.py``): the same sweeps, the same metric, the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from glassbox import patching
from conftest import FIXTURES, close, read_safetensors
from test_weights import transformer_lens


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def case(request, gpt2, llama):
    model = {"gpt2": gpt2, "llama": llama}[request.param]
    tl, meta = transformer_lens(request.param)
    clean = np.array([meta["input_ids"]], dtype=np.uint32)
    corrupt = np.array([meta["patch"]["corrupt_ids"]], dtype=np.uint32)
    _, clean_cache = model.run_with_cache(clean)
    answer, wrong = meta["answer_id"], meta["wrong_id"]

    def metric(logits):
        return logits[0, -1, answer] - logits[0, -1, wrong]

    return model, corrupt, clean_cache, metric, tl, clean


def test_block_and_residual_sweeps(case):
    model, corrupt, clean_cache, metric, tl, clean = case
    every = patching.get_act_patch_block_every(model, corrupt, clean_cache, metric)
    assert every.shape == (3, model.cfg.n_layers, corrupt.shape[1])
    close(every, tl["patch.block_every"], 1e-4)
    close(patching.get_act_patch_resid_mid(model, corrupt, clean_cache, metric), tl["patch.resid_mid"], 1e-4)
    # the prompts differ in one token: patching the stream there into the first block is the
    # clean run itself
    (differ,) = np.flatnonzero(clean[0] != corrupt[0])
    close(every[0, 0, differ], metric(model(clean)), 1e-5)


def test_head_sweeps(case):
    model, corrupt, clean_cache, metric, tl, _ = case
    close(patching.get_act_patch_attn_head_all_pos_every(model, corrupt, clean_cache, metric),
          tl["patch.head_all_pos_every"], 1e-4)
    close(patching.get_act_patch_attn_head_by_pos_every(model, corrupt, clean_cache, metric),
          tl["patch.head_by_pos_every"], 1e-4)
    close(patching.get_act_patch_attn_head_pattern_dest_src_pos(model, corrupt, clean_cache, metric),
          tl["patch.pattern_dest_src_pos"], 1e-4)


def test_chosen_indices(case):
    model, corrupt, clean_cache, metric, tl, _ = case
    rows = [(0, 3), (1, 5), (1, 0)]
    out = patching.generic_activation_patch(
        model, corrupt, clean_cache, metric, patching.layer_pos_patch_setter, "resid_pre", index_df=rows
    )
    close(out, tl["patch.generic_index_df"], 1e-4)
    with pytest.raises(ValueError, match="not both"):
        patching.generic_activation_patch(model, corrupt, clean_cache, metric, patching.layer_pos_patch_setter,
                                          "resid_pre", index_axis_names=("layer", "pos"), index_df=rows)
    with pytest.raises(ValueError, match="unknown index axes"):
        patching.generic_activation_patch(model, corrupt, clean_cache, metric, patching.layer_pos_patch_setter,
                                          "resid_pre", index_axis_names=("layer", "position"))


def test_resid_pre_matches_the_earlier_transformer_lens_fixture(gpt2):
    # gpt2-transformerlens.safetensors (make_analysis_fixtures.py) holds TransformerLens'
    # get_act_patch_resid_pre on its own prompts
    tl = read_safetensors(FIXTURES / "analyses" / "gpt2-transformerlens.safetensors")
    clean, corrupt = tl["patch.clean_ids"].astype(np.uint32), tl["patch.corrupt_ids"].astype(np.uint32)
    answer, wrong = gpt2.to_single_token(" Mary"), gpt2.to_single_token(" John")
    _, clean_cache = gpt2.run_with_cache(clean)
    grid = patching.get_act_patch_resid_pre(gpt2, corrupt, clean_cache,
                                           lambda lg: lg[0, -1, answer] - lg[0, -1, wrong])
    close(grid, tl["patch.resid_pre"], 1e-4)
