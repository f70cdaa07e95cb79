"""Each head: output shapes, and padding masked everywhere (padded == unpadded prediction)."""

from __future__ import annotations

import pytest
import torch

from conftest import REPO
from zhcls.config import HEADS, load_config
from zhcls.modeling.encoder import load_encoder
from zhcls.modeling.model import build_model


def make_model(tiny_model, head, max_length=32, **over):
    overrides = ["--model.head", head, "--model.pretrained", str(tiny_model),
                 "--data.max_length", str(max_length), "--model.num_filters", "8",
                 "--model.rnn_hidden", "16", "--model.dpcnn_filters", "8"]
    for k, v in over.items():
        overrides += [f"--{k.replace('__', '.')}", str(v)]
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    torch.manual_seed(0)
    return build_model(load_encoder(str(tiny_model)), cfg, num_labels=5).eval()


def in_vocab(raw: torch.Tensor, model) -> torch.Tensor:
    """Token ids valid for any vocabulary size (the shared vocab or a small character one)."""
    return raw % model.encoder.config.vocab_size


@pytest.mark.parametrize("head", HEADS)
def test_shapes_and_padding_invariance(tiny_model, head):
    model = make_model(tiny_model, head)
    raw = torch.tensor([[101, 704, 1290, 1957, 2094, 2110, 7368, 102],
                        [101, 3330, 3173, 102, 0, 0, 0, 0]])  # (2, 8)
    mask = (raw != 0).long()
    ids = in_vocab(raw, model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
        alone = model(input_ids=ids[1:, :4], attention_mask=mask[1:, :4])  # unpadded copy
        wide = torch.cat([ids, torch.zeros(2, 20, dtype=torch.long)], 1)  # more padding
        wide_mask = torch.cat([mask, torch.zeros(2, 20, dtype=torch.long)], 1)
        padded = model(input_ids=wide, attention_mask=wide_mask)
    assert out.logits.shape == (2, 5)
    assert out.representation.shape == (2, model.head.out_dim)
    torch.testing.assert_close(out.logits[1:], alone.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.representation[1:], alone.representation, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.logits, padded.logits, atol=1e-5, rtol=1e-4)
    if head == "bert_GRU_att":
        assert out.attention.shape == (2, 8)
        torch.testing.assert_close(out.attention.sum(1), torch.ones(2))
        assert float(out.attention[1, 4:].abs().sum()) == 0.0  # no weight on padding
    else:
        assert out.attention is None


def test_padding_changes_nothing_even_for_very_short_text(tiny_model):
    model = make_model(tiny_model, "bert_CNN", **{"model__filter_sizes": "2,3,4"})
    one = torch.tensor([[101, 102]])  # shorter than the widest kernel
    padded = torch.tensor([[101, 102, 0, 0, 0, 0]])
    with torch.no_grad():
        a = model(input_ids=one, attention_mask=torch.ones_like(one)).logits
        b = model(input_ids=padded, attention_mask=(padded != 0).long()).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_padding_is_not_ignored_would_fail_without_mask(tiny_model):
    """Guard against a masking test that cannot fail: treating padding as tokens changes output."""
    model = make_model(tiny_model, "bert_RCNN")
    raw = torch.tensor([[101, 3330, 3173, 102, 0, 0, 0, 0]])
    ids = in_vocab(raw, model)
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=(raw != 0).long()).logits
        unmasked = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert not torch.allclose(masked, unmasked, atol=1e-4)


def test_projection_head_features(tiny_model):
    model = make_model(tiny_model, "bert", **{"objective__representation": "mlp",
                                               "objective__projection_dim": "16"})
    ids = in_vocab(torch.tensor([[101, 704, 102]]), model)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.features.shape == (1, 16)
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(1))


@pytest.mark.parametrize("head", HEADS)
def test_every_parameter_gets_a_gradient(tiny_model, head):
    """What lets DDP run without find_unused_parameters: heads that read token states are
    built without the encoder's pooler, so no parameter is left without a gradient."""
    model = make_model(tiny_model, head).train()
    ids = in_vocab(torch.tensor([[101, 704, 1290, 1957, 2094, 102], [101, 3330, 3173, 102, 0, 0]]),
                   model)
    model(input_ids=ids, attention_mask=(ids != 0).long()).logits.sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    assert (model.encoder.pooler is not None) == (head in ("bert", "ERNIE"))


def test_checkpoint_saved_with_the_pooler_still_loads(tiny_model, tmp_path):
    """Checkpoints written before the pooler was dropped hold encoder.pooler.* weights."""
    from transformers import AutoTokenizer
    from transformers.models.bert.modeling_bert import BertPooler

    from zhcls.config import load_config
    from zhcls.modeling.checkpoint import load_checkpoint, save_checkpoint

    model = make_model(tiny_model, "bert_CNN")
    model.encoder.pooler = BertPooler(model.encoder.config)  # as the old code built it
    cfg = load_config(REPO / "configs" / "tiny.yaml",
                      ["--model.head", "bert_CNN", "--model.pretrained", str(tiny_model),
                       "--model.num_filters", "8"])
    save_checkpoint(tmp_path, model, AutoTokenizer.from_pretrained(str(tiny_model)), cfg,
                    ["a", "b", "c", "d", "e"])
    loaded = load_checkpoint(tmp_path).model
    assert loaded.encoder.pooler is None
    ids = in_vocab(torch.tensor([[101, 704, 1290, 1957, 102]]), model)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits,
                                   model(input_ids=ids, attention_mask=mask).logits)
