"""Loading checkpoints and encoders: damaged files, label lists that no longer match the weights,
the checkpoint format version, hub names vs local paths, the hub probe (huggingface_hub's own
request, to HF_ENDPOINT's port), and the inference precision taken from the checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from predict_fixtures import free_port, head_checkpoint
from zhcls.errors import CheckpointError
from zhcls.modeling.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory, tiny_model):
    return head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")


@pytest.fixture()
def ckpt(tmp_path, base_ckpt):
    """A private copy the test may damage."""
    return shutil.copytree(base_ckpt, tmp_path / "ckpt")


def _labels(path):
    return json.loads((path / "labels.json").read_text(encoding="utf-8"))["labels"]


def test_reordered_labels_are_refused_by_the_digest_saved_with_the_weights(ckpt):
    labels = _labels(ckpt)
    (ckpt / "labels.json").write_text(json.dumps({"labels": labels[::-1]}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"labels.json: the labels .* are not the ones"):
        load_checkpoint(ckpt)


def test_duplicate_label_names_are_refused(ckpt):
    labels = _labels(ckpt)
    (ckpt / "labels.json").write_text(json.dumps({"labels": [labels[0]] * len(labels)}),
                                      encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"labels.json: label .* appears twice \(ids 0 and 1"):
        load_checkpoint(ckpt)


def test_checkpoint_without_a_digest_still_loads_with_a_debug_log(ckpt, caplog):
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / "model.safetensors"))
    save_file(state, str(ckpt / "model.safetensors"))  # as older zhcls wrote it: no metadata
    with caplog.at_level(logging.DEBUG, logger="zhcls.modeling.checkpoint"):
        loaded = load_checkpoint(ckpt)
    assert loaded.labels == _labels(ckpt)
    assert "no label digest" in caplog.text


def test_meta_json_format_is_checked(ckpt):
    meta = json.loads((ckpt / "meta.json").read_text(encoding="utf-8"))
    (ckpt / "meta.json").write_text(json.dumps({**meta, "format": 99}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="meta.json: checkpoint format 99 .* newer"):
        load_checkpoint(ckpt)
    (ckpt / "meta.json").write_text('{"format": "one"}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="meta.json: expected an object with an integer"):
        load_checkpoint(ckpt)
    (ckpt / "meta.json").unlink()  # very early checkpoints had none
    assert load_checkpoint(ckpt).labels == _labels(ckpt)


def test_run_directory_suggests_its_best_checkpoint(tmp_path, base_ckpt):
    run = tmp_path / "run"
    shutil.copytree(base_ckpt, run / "best")
    with pytest.raises(CheckpointError, match=f"its best model is {run / 'best'}"):
        load_checkpoint(run)


def test_missing_checkpoint_path_suggests_close_names(tmp_path):
    (tmp_path / "THUCNews-best").mkdir()
    with pytest.raises(CheckpointError, match=r"does not exist.*did you mean .*THUCNews-best"):
        load_checkpoint(tmp_path / "thucnews-best")


def test_missing_local_encoder_path_is_not_a_hub_download(tmp_path):
    from zhcls.modeling.encoder import load_encoder, load_tokenizer

    (tmp_path / "Tiny").mkdir()
    for loader in (load_encoder, load_tokenizer):
        with pytest.raises(CheckpointError, match="path does not exist") as info:
            loader(str(tmp_path / "tiny"))
        assert "hub" not in str(info.value).split(";")[0]
        assert str(tmp_path / "Tiny") in str(info.value)
    with pytest.raises(CheckpointError, match=r"/no/such/dir/model: path does not exist"):
        load_encoder("/no/such/dir/model")


def test_local_looking_paths():
    from zhcls.utils import looks_like_local_path

    assert looks_like_local_path("./tiny") and looks_like_local_path("~/models/bert")
    assert looks_like_local_path("/tmp/tiny") and looks_like_local_path("a/b/c")
    assert not looks_like_local_path("bert-base-chinese")
    assert not looks_like_local_path("hfl/chinese-roberta-wwm-ext")  # a hub id, no hfl/ here


class _Hub(BaseHTTPRequestHandler):
    """A hub on an arbitrary port: HEAD of ``known/model`` files answers 200, others 404."""

    def do_HEAD(self):  # noqa: N802 - http.server API
        known = self.path.startswith("/known/model/resolve/")
        self.send_response(200 if known else 404)
        if not known:
            self.send_header("X-Error-Code", "RepoNotFound")
        else:
            self.send_header("ETag", '"abc"')
            self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def hub(monkeypatch):
    from huggingface_hub import constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    yield endpoint
    server.shutdown()
    server.server_close()


def test_hub_probe_uses_the_endpoint_port(hub):
    """The old probe opened 127.0.0.1:443 (refused) whatever HF_ENDPOINT's port was."""
    from zhcls.modeling.encoder import ensure_hub_reachable

    ensure_hub_reachable("known/model", timeout=5)
    with pytest.raises(CheckpointError, match="no such repository") as info:
        ensure_hub_reachable("unknown/model", timeout=5)
    assert hub in str(info.value)


def test_hub_probe_unreachable_and_offline_are_clear(hub, monkeypatch):
    from zhcls.modeling.encoder import ensure_hub_reachable

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nobody listens
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="unreachable .*HF_ENDPOINT / HTTPS_PROXY"):
        ensure_hub_reachable("known/model", timeout=2)
    assert time.monotonic() - start < 5
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline mode is on"):
        ensure_hub_reachable("known/model")


def test_autocast_follows_precision():
    import torch

    from zhcls.modeling.forward import autocast_dtype

    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, "fp32") is None
    assert autocast_dtype(cuda, "bf16") is torch.bfloat16
    assert autocast_dtype(cuda, "fp16") is torch.float16
    assert autocast_dtype(torch.device("cpu"), "bf16") is None


def test_classifier_runs_in_the_checkpoint_precision(ckpt, monkeypatch):
    """train.precision fp32 must mean fp32 at prediction time too (the old code autocast on
    every GPU)."""
    import yaml

    import zhcls.modeling.forward as forward
    from zhcls.inference.classifier import Classifier

    config = yaml.safe_load((ckpt / "zhcls.yaml").read_text(encoding="utf-8"))
    config["train"]["precision"] = "fp32"
    (ckpt / "zhcls.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    seen = []
    real = forward.autocast_dtype
    monkeypatch.setattr(forward, "autocast_dtype",
                        lambda device, precision="auto": seen.append(precision) or real(
                            device, precision))
    Classifier.load(ckpt, "cpu").predict("中超联赛")
    Classifier.load(ckpt, "cpu", precision="bf16").predict("中超联赛")
    assert seen == ["fp32", "bf16"]
