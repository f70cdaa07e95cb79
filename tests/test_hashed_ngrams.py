"""zhcls.modeling.hashed_ngrams: the hashed n-gram bag against hand-computed buckets and means;
its place in the model (representation width, padding invariance), the config checks and its
own optimizer group."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zhcls.config import load_config
from zhcls.errors import ConfigError
from zhcls.modeling.hashed_ngrams import MODULUS, PRIME, HashedNgramBag


def ref_bucket(ngram: tuple[int, ...], buckets: int) -> int:
    """The module docstring's hash, in exact Python integers."""
    h = len(ngram)
    for t in ngram:
        h = (h * PRIME + t) % MODULUS
    return h % buckets


def test_buckets_are_the_documented_hash_of_each_window_ngram():
    bag = HashedNgramBag(buckets=1000, dim=4, orders=[1, 2, 3])
    ids = torch.tensor([[101, 7, 8, 102, 0]])  # (1, 5): [CLS] a b [SEP] pad
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    buckets, valid = bag.hashes(ids, mask)
    toks = (101, 7, 8, 102, 0)
    expect = [ref_bucket(toks[i:i + n], 1000) for n in (1, 2, 3) for i in range(6 - n)]
    assert buckets[0].tolist() == expect
    # padding is never part of an n-gram: 4 unigrams, 3 bigrams, 2 trigrams are valid
    assert valid[0].tolist() == [True] * 4 + [False] + [True] * 3 + [False] + [True] * 2 + [False]


def test_the_vector_is_the_mean_of_the_valid_ngram_embeddings():
    bag = HashedNgramBag(buckets=50, dim=3, orders=[2])
    with torch.no_grad():
        bag.embedding.weight.copy_(torch.arange(150, dtype=torch.float32).view(50, 3))
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    rows0 = [ref_bucket((1, 2), 50), ref_bucket((2, 3), 50)]
    rows1 = [ref_bucket((4, 5), 50)]
    expect = torch.stack([bag.embedding.weight[rows0].mean(0), bag.embedding.weight[rows1].mean(0)])
    torch.testing.assert_close(bag(ids, mask), expect)


def test_short_windows_padding_and_empty_windows():
    bag = HashedNgramBag(buckets=97, dim=5, orders=[1, 2, 3])
    ids = torch.tensor([[101, 9, 102]])
    mask = torch.ones_like(ids)
    padded_ids = torch.tensor([[101, 9, 102, 0, 0, 0]])
    padded_mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    torch.testing.assert_close(bag(ids, mask), bag(padded_ids, padded_mask))
    # a window shorter than an order has no n-gram of it; an all-padding row is the zero vector
    assert bag(ids[:, :1], mask[:, :1]).shape == (1, 5)
    zero = bag(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    assert torch.equal(zero, torch.zeros(1, 5))


@pytest.mark.parametrize("order", [3, 4])
def test_hash_does_not_overflow_for_large_token_ids(order):
    bag = HashedNgramBag(buckets=2**18, dim=2, orders=[order])
    big = 2**31 - 2  # far beyond any BERT-family vocabulary (bert-base-chinese: 21,128)
    buckets, _ = bag.hashes(torch.full((1, order), big), torch.ones(1, order))
    assert buckets.item() == ref_bucket((big,) * order, 2**18)


def test_four_grams_are_the_documented_hash():
    config = load_config(None, ["--model.ngram_orders", "[1, 2, 3, 4]"])
    assert config.model.ngram_orders == [1, 2, 3, 4]
    bag = HashedNgramBag(buckets=1000, dim=4, orders=config.model.ngram_orders)
    toks = (101, 7, 8, 9, 102)  # [CLS] a b c [SEP]
    buckets, valid = bag.hashes(torch.tensor([toks]), torch.ones(1, 5))
    assert buckets[0].tolist() == [ref_bucket(toks[i:i + n], 1000) for n in (1, 2, 3, 4)
                                   for i in range(6 - n)]
    assert valid.all() and buckets.shape == (1, 5 + 4 + 3 + 2)


def test_distinct_ngrams_spread_over_the_table_like_a_random_hash():
    """100k distinct bigrams of CJK-range ids into 2^18 buckets: a random hash uses
    B(1 - e^(-N/B)) ~ 83k rows. (The first hash, P = 2^16 + 1 reduced modulo the power-of-two
    bucket count, used under 59k: a bigram's row depended on t1 + t2 and t1 mod 4.)"""
    g = torch.Generator().manual_seed(0)
    pairs = torch.unique(torch.randint(670, 8000, (120_000, 2), generator=g), dim=0)[:100_000]
    bag = HashedNgramBag(buckets=2**18, dim=2, orders=[2])
    buckets, _ = bag.hashes(pairs, torch.ones_like(pairs))  # (N, 1)
    n, b = pairs.shape[0], 2**18
    ideal = b * (1 - math.exp(-n / b))
    used = torch.unique(buckets).numel()
    assert used > 0.97 * ideal, f"{used} rows used by {n} distinct bigrams, ~{ideal:.0f} expected"
    two = bag.hashes(torch.tensor([[2000, 3000], [2004, 2996]]), torch.ones(2, 2))[0]
    assert two[0, 0] != two[1, 0]


@pytest.mark.parametrize("orders", [[0], [5], [2, 2], []])
def test_bad_orders_are_config_errors_naming_the_key(orders):
    with pytest.raises(ConfigError, match="model.ngram_orders"):
        load_config(None, ["--model.ngram_orders", str(orders)])


def test_bad_buckets_and_lr_are_config_errors():
    with pytest.raises(ConfigError, match="model.ngram_buckets"):
        load_config(None, ["--model.ngram_buckets", "-1"])
    with pytest.raises(ConfigError, match="model.ngram_lr"):
        load_config(None, ["--model.ngram_lr", "0"])


def _model(tiny_model, buckets: int, head: str = "bert_CNN"):
    from zhcls.modeling.encoder import load_encoder
    from zhcls.modeling.model import build_model

    config = load_config(None, ["--model.head", head, "--model.pretrained", str(tiny_model),
                                "--model.ngram_buckets", str(buckets), "--model.ngram_dim", "16"])
    torch.manual_seed(0)
    return build_model(load_encoder(str(tiny_model)), config, 3).eval(), config


def test_the_bag_joins_the_representation_and_ignores_padding(tiny_model):
    model, _ = _model(tiny_model, 512)
    plain, _ = _model(tiny_model, 0)
    assert model.rep_dim == plain.rep_dim + 16
    assert model.classifier.in_features == model.rep_dim
    ids = torch.tensor([[101, 700, 701, 702, 102]])
    out = model(ids, torch.ones_like(ids))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    out_padded = model(padded, torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]]))
    assert out.representation.shape == (1, model.rep_dim)
    torch.testing.assert_close(out.logits, out_padded.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.representation[:, -16:], model.ngrams(ids, torch.ones_like(ids)))


@pytest.mark.parametrize("optimizer", ["adamw", "bertadam"])
def test_the_table_has_its_own_learning_rate_and_no_weight_decay(tiny_model, tmp_path, optimizer):
    from transformers import TrainingArguments

    from zhcls.training.trainer import ZhclsTrainer

    model, config = _model(tiny_model, 256)
    config.train.optimizer = optimizer
    config.model.ngram_lr = 0.05
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=config.train.lr,
                             report_to=[], use_cpu=True)
    trainer = ZhclsTrainer.__new__(ZhclsTrainer)  # only the optimizer factory is under test
    trainer.model, trainer.args, trainer.zh_config, trainer.optimizer = model, args, config, None
    groups = trainer.create_optimizer().param_groups
    table = [g for g in groups if any(p is model.ngrams.embedding.weight for p in g["params"])]
    assert len(table) == 1 and table[0]["params"] == [model.ngrams.embedding.weight]
    assert table[0]["lr"] == 0.05 and table[0]["weight_decay"] == 0.0
    others = [p for g in groups if g is not table[0] for p in g["params"]]
    assert len(others) + 1 == len(list(model.parameters()))
    assert all(g["lr"] == config.train.lr for g in groups if g is not table[0])


@pytest.fixture(scope="module")
def ngram_checkpoint(tmp_path_factory, tiny_model, tiny_data):
    """A bert_CNN + n-gram bag model trained with the real ``zhcls train`` (its best dir)."""
    from conftest import tiny_config
    from zhcls.training.train import train

    config = tiny_config(tiny_model, "bert_CNN", model__ngram_buckets=4096, model__ngram_dim=8,
                         train__max_steps=12, train__eval_steps=6, train__evaluate_test="false")
    return train(config, tiny_data, tmp_path_factory.mktemp("ngram") / "run").best_dir


def test_a_trained_bag_model_predicts_and_exports_to_onnx_with_parity(ngram_checkpoint, tmp_path):
    import numpy as np

    from predict_fixtures import sample_texts
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.export import export_onnx

    texts = sample_texts(60)
    torch_clf = Classifier.load(ngram_checkpoint, "cpu")
    assert torch_clf.backend.model.ngrams is not None  # the saved config rebuilt the bag
    result = export_onnx(ngram_checkpoint, tmp_path / "onnx")
    assert result.max_abs_prob_diff < 1e-4
    onnx_clf = Classifier.load(tmp_path / "onnx", "cpu")
    diff = np.abs(onnx_clf.predict_proba(texts) - torch_clf.predict_proba(texts)).max()
    assert diff < 1e-4, f"onnxruntime and PyTorch differ by {diff:.2e} with the n-gram bag"


def test_hf_export_refuses_a_bag_model_with_the_reason(ngram_checkpoint, tmp_path):
    from zhcls.errors import ZhclsError
    from zhcls.inference.export_hf import export_hf

    with pytest.raises(ZhclsError, match=r"ngram_buckets.*--format onnx"):
        export_hf(ngram_checkpoint, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_the_model_card_names_the_bag(ngram_checkpoint):
    from zhcls.modeling.model_card import render_model_card

    card = (ngram_checkpoint / "README.md").read_text(encoding="utf-8")
    assert "hashed token 1/2/3-gram bag (4,096 buckets × 8)" in card
    assert "gram bag" not in render_model_card({"model": {"head": "bert"}}, ["a", "b"], {})


def test_ig_credits_the_bag_so_attributions_stay_complete(ngram_checkpoint):
    """Integrated gradients through both embedding tables: the convergence delta stays small
    (with the word embeddings alone, the bag's whole effect was left in the delta)."""
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.explain import explain_texts, integrated_gradients

    clf = Classifier.load(ngram_checkpoint, "cpu")
    model, tok = clf.backend.model, clf.tokenizer
    with torch.no_grad():  # make the bag matter: scale its classifier weights up
        model.classifier.weight[:, -8:].mul_(200.0)
    text = "央行宣布下调存款准备金率"
    ids = torch.tensor([tok(text)["input_ids"]])  # (1, T)
    mask = torch.ones_like(ids)
    target = int(clf.predict(text).label_id)
    baseline = ids.clone()
    baseline[0, 1:-1] = tok.pad_token_id
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1)[0, target]
        p0 = torch.softmax(model(input_ids=baseline, attention_mask=mask).logits, -1)[0, target]
    change = abs(float(p - p0))
    assert change > 0.05, "text and baseline predict alike: the check proves little"
    scores, delta = integrated_gradients(model, ids, mask, target, tok, steps=64)
    assert delta < 0.02 * change + 1e-3, f"delta {delta:.3g} for a probability change {change:.3g}"
    assert scores.shape == (ids.shape[1],)
    (expl,) = explain_texts(clf, [text], steps=16)
    assert len(expl.scores["ig"]) == len(expl.tokens)
    # the spreading: a bigram's score lands half on each of its two tokens
    share = model.ngrams.spread_to_tokens(torch.arange(1.0, 1.0 + 4 + 3 + 2), 4)
    uni, bi, tri = [1.0, 2, 3, 4], [5.0, 6, 7], [8.0, 9]
    expect = [uni[0] + bi[0] / 2 + tri[0] / 3,
              uni[1] + (bi[0] + bi[1]) / 2 + (tri[0] + tri[1]) / 3,
              uni[2] + (bi[1] + bi[2]) / 2 + (tri[0] + tri[1]) / 3,
              uni[3] + bi[2] / 2 + tri[1] / 3]
    torch.testing.assert_close(share, torch.tensor(expect))


def test_the_run_logs_the_tables_learning_rate_beside_the_encoders(ngram_checkpoint):
    run = ngram_checkpoint.parent
    config = json.loads((run / "zhcls-run.json").read_text())["config"]  # what the run used
    ratio = config["model"]["ngram_lr"] / config["train"]["lr"]
    assert ratio > 5  # the defaults: the table's peak is far above the encoder's
    logged = [e for e in json.loads((run / "history.json").read_text())["log_history"]
              if "learning_rate" in e]
    assert logged, "no learning rate was logged"
    for entry in logged:  # the same schedule on both groups, each at its own peak
        assert entry["learning_rate_ngram"] == pytest.approx(entry["learning_rate"] * ratio)


@pytest.mark.parametrize("edit, blamed", [
    ("ngram_dim: 8", "ngram_dim: 16"),          # the table's width: a shape mismatch
    ("ngram_buckets: 4096", "ngram_buckets: 0"),  # no bag: the table's weights are left over
])
def test_editing_the_bag_of_a_trained_checkpoint_blames_zhcls_yaml(ngram_checkpoint, tmp_path,
                                                                    edit, blamed):
    import shutil

    from zhcls.errors import CheckpointError
    from zhcls.modeling.checkpoint import load_checkpoint

    copy = tmp_path / "ckpt"
    shutil.copytree(ngram_checkpoint, copy)
    text = (copy / "zhcls.yaml").read_text("utf-8")
    assert edit in text
    (copy / "zhcls.yaml").write_text(text.replace(edit, blamed), "utf-8")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(copy)
    message = str(err.value)
    assert "model settings of zhcls.yaml" in message, message
    assert "ngrams.embedding.weight" in message and "encoder_config.json" not in message, message


def test_the_tables_learning_rate_is_logged_after_a_resume(tiny_model, tmp_path, monkeypatch):
    """A resumed optimizer's param groups are the dicts saved in the checkpoint (a checkpoint
    of an older zhcls carries no marker in them): the table's group is found by its tensors."""
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import Trainer, TrainingArguments

    from zhcls.training.trainer import ZhclsTrainer

    model, config = _model(tiny_model, 256)
    config.model.ngram_lr = 0.05
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=config.train.lr,
                             report_to=[], use_cpu=True)
    trainer = ZhclsTrainer.__new__(ZhclsTrainer)  # the optimizer factory and log() under test
    trainer.model, trainer.args, trainer.zh_config, trainer.optimizer = model, args, config, None
    trainer._term_count, trainer._term_sums = 0, {}
    optimizer = trainer.create_optimizer()
    saved = optimizer.state_dict()
    for group in saved["param_groups"]:  # as an older checkpoint wrote them
        group.pop("name", None)
    optimizer.load_state_dict(saved)  # what resuming from the checkpoint does
    trainer.lr_scheduler = LambdaLR(optimizer, lambda step: 0.5)
    logged: dict = {}
    monkeypatch.setattr(Trainer, "log", lambda self, logs, start_time=None: logged.update(logs))
    trainer.log({"loss": 1.0, "learning_rate": config.train.lr * 0.5})
    assert logged["learning_rate_ngram"] == pytest.approx(0.05 * 0.5)
