"""Every shipped YAML loads; overrides coerce types; unknown keys and bad values name the key;
every key is documented; objective presets and terms."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from conftest import REPO
from zhcls.config import (
    HEADS,
    Config,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
    config_from_dict,
    config_keys,
    load_config,
    opt,
)
from zhcls.errors import ConfigError

YAMLS = sorted((REPO / "configs").glob("*.yaml"))
PACKAGED_YAMLS = sorted((REPO / "src" / "zhcls" / "resources").rglob("*.yaml"))


def undocumented(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if not f.metadata.get("help", "").strip() or "\n" in f.metadata["help"]]


def test_every_config_key_has_a_one_line_doc():
    """A key declared without ``opt(default, "doc")`` (or with a multi-line doc) fails here."""
    keys = config_keys()
    assert len(keys) > 40
    assert [k.dotted for k in keys if not k.help.strip() or "\n" in k.help] == []
    for section in Config().__dict__.values():
        assert undocumented(type(section)) == []


def test_the_doc_check_catches_an_undocumented_key():
    @dataclasses.dataclass
    class Section:
        documented: int = opt(1, "a doc")
        threads: int = 0

    assert undocumented(Section) == ["threads"]


def test_there_is_a_yaml_per_head_and_tiny():
    names = {p.stem for p in YAMLS}
    assert set(HEADS) | {"tiny"} <= names


@pytest.mark.parametrize("path", YAMLS + PACKAGED_YAMLS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    if path.stem.startswith("pretrain"):  # `zhcls pretrain`'s configs
        from zhcls.training.pretrain_config import PretrainConfig

        assert isinstance(load_config(path, root=PretrainConfig), PretrainConfig)
        return
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    if path.stem in HEADS:
        assert cfg.model.head == path.stem
        assert cfg.train.lr == 5e-5 and cfg.train.batch_size == 128 and cfg.train.epochs == 3


def test_research_defaults():
    cfg = load_config(None)
    t = cfg.train
    assert (t.lr, t.batch_size, t.epochs, t.eval_steps, t.require_improvement) == (5e-5, 128, 3, 100, 1000)
    assert (t.warmup_ratio, t.weight_decay, t.metric_for_best) == (0.05, 0.01, "loss")
    assert cfg.data.max_length == 32 and cfg.objective.name == "ce"


def test_overrides_coerce_types():
    cfg = load_config(REPO / "configs" / "bert.yaml", [
        "--train.lr", "3e-5", "--train.max_steps=50", "--model.filter_sizes", "3,5",
        "--train.group_by_length", "false", "--objective.name", "ce+scl", "--data.cache_dir", "null",
    ])
    assert cfg.train.lr == 3e-5 and cfg.train.max_steps == 50
    assert cfg.model.filter_sizes == [3, 5] and cfg.train.group_by_length is False
    assert cfg.objective.name == "ce+scl" and cfg.data.cache_dir is None


@pytest.mark.parametrize("overrides,needle", [
    (["--train.lrr", "1"], "unknown key '--train.lrr'.*train keys are"),
    (["--train.lrr", "1"], r"did you mean --train\.lr\b"),
    (["--trian.lr", "1"], r"did you mean --train\.lr\b"),
    (["--objective.temprature", "1"], r"did you mean --objective\.temperature\b"),
    (["--trian.lr", "1"], "unknown key '--trian.lr'.*sections are"),
    (["--train.lr", "fast"], "--train.lr: expected float, got 'fast'"),
    (["--train.batch_size", "1.5"], "--train.batch_size: expected int, got 1.5"),
    (["--train.lr", "-1"], "train.lr: expected a positive number"),
    (["--model.head", "bert_XL"], "model.head: expected one of bert, bert_CNN"),
    (["--objective.alpha", "1.5"], r"objective.alpha: expected a value in \[0.0, 1.0\]"),
    (["--train.lr"], "--train.lr: missing value"),
    (["train.lr", "1"], "overrides look like --train.lr 3e-5"),
])
def test_bad_overrides_name_the_flag(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, overrides)


def test_bad_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'train.learning_rate'"):
        load_config(path)
    path.write_text("optimizer:\n  lr: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown section 'optimizer'"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(REPO / "configs" / "bert_CNN.yaml", ["--train.seed", "7"])
    cfg.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg


def test_unknown_yaml_key_suggests_the_close_one(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  batchsize: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'train.batchsize' \(did you "
                       r"mean train.batch_size\b"):
        load_config(path)


# ---- objective: presets and terms -------------------------------------------------------


@pytest.mark.parametrize("overrides,teacher,scl", [
    ([], False, False),
    (["--objective.name", "kd"], True, False),
    (["--objective.name", "kd+scl"], True, True),
    (["--objective.name", "kd+scl", "--objective.alpha", "1"], True, False),  # SCL weight 0
    (["--objective.name", "kd", "--objective.beta", "1"], False, False),  # soft weight 0
    (["--objective.terms", "{ce: 1, scl: 0.3}"], False, True),
    (["--objective.terms", "{kd: 1}"], True, False),
    (["--objective.terms", "{ce: 1, kd: 0, scl: 0.3}"], False, True),
])
def test_uses_teacher_and_scl_follow_the_weights(overrides, teacher, scl):
    o = load_config(None, overrides).objective
    assert (o.uses_teacher, o.uses_scl) == (teacher, scl)


def test_terms_alone_leave_no_name_and_round_trip(tmp_path):
    cfg = load_config(None, ["--objective.terms", "{ce: 1, kd: 0.5, scl: 0.3}"])
    assert cfg.objective.name is None
    assert cfg.objective.weights == {"ce": 1.0, "kd": 0.5, "scl": 0.3}
    assert cfg.objective.label == "1·ce + 0.5·kd + 0.3·scl"
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_name_and_terms_together_must_agree():
    ok = load_config(None, ["--objective.name", "kd+scl", "--objective.alpha", "0.6",
                            "--objective.beta", "0.5", "--objective.terms",
                            "{ce: 0.3, kd: 0.3, scl: 0.4}"])
    assert ok.objective.name == "kd+scl"
    with pytest.raises(ConfigError, match=r"objective.name 'kd' .* and objective.terms .* "
                       r"disagree.*--objective.name null"):
        load_config(None, ["--objective.name", "kd", "--objective.terms", "{ce: 1, kd: 0.5}"])


@pytest.mark.parametrize("terms,needle", [
    ("{ce: 1, kb: 0.5}", r"unknown term 'kb' \(did you mean kd\?\)"),
    ("{ce: -1, kd: 1}", r"objective.terms.ce: expected a weight >= 0, got -1.0"),
    ("{ce: 0}", "at least one weight > 0"),
    ("[1, 2]", r"--objective.terms: expected a mapping such as \{ce: 1.0, kd: 0.5\}"),
    ("{ce: lots}", r"--objective.terms.ce: expected float, got 'lots'"),
])
def test_bad_terms_name_the_term(terms, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, ["--objective.terms", terms])


def test_reads_knows_which_keys_change_the_loss():
    kd = load_config(None, ["--objective.name", "kd"]).objective
    assert kd.reads("beta") and kd.reads("temperature") and not kd.reads("alpha")
    assert not kd.reads("scl_temperature")
    terms = load_config(None, ["--objective.terms", "{ce: 1, scl: 0.3}"]).objective
    assert terms.reads("scl_temperature") and not terms.reads("lam")
    assert not terms.reads("temperature")


def test_config_from_dict_of_an_old_checkpoint_without_terms():
    cfg = config_from_dict(yaml.safe_load("objective:\n  name: kd+scl\n  alpha: 0.7\n"))
    assert cfg.objective.terms is None and cfg.objective.uses_scl


# ---- the generated CLI: zhcls train --help / --print-config / overrides -------------------


def _help(capsys, monkeypatch, *argv: str) -> str:
    from zhcls.cli import main

    monkeypatch.setenv("COLUMNS", "400")  # one line per option: no wrapping inside a doc
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_help_shows_every_key_with_type_default_and_doc(command, capsys, monkeypatch):
    from zhcls.cli.config_options import help_text, type_text
    from zhcls.cli.sweep import HIDDEN  # options a sweep sets itself: refused, not listed

    text = _help(capsys, monkeypatch, command)
    for key in config_keys():
        if command == "sweep" and f"--{key.dotted}" in HIDDEN:
            assert f"--{key.dotted} " not in text, key.dotted
            continue
        shown = " ".join(help_text(key).replace("%%", "%").split())
        metavar = f"[{type_text(key)}]" if key.hint is bool else type_text(key)  # bare = true
        assert f"--{key.dotted} {metavar} {shown}" in text, key.dotted
    assert "--train.lr FLOAT peak AdamW learning rate" in text and "(default: 5e-05)" in text
    assert "--model.head {bert,bert_CNN,bert_RNN,bert_RCNN,bert_DPCNN,bert_GRU_att,ERNIE}" in text
    assert "--config FILE.yaml" in text


def _print_config(capsys, *argv: str) -> Config:
    from zhcls.cli import main

    assert main(["train", *argv, "--print-config"]) == 0
    return config_from_dict(yaml.safe_load(capsys.readouterr().out))


def test_print_config_resolves_file_overrides_data_and_out(capsys):
    cfg = _print_config(capsys, "--config", str(REPO / "configs" / "tiny.yaml"),
                        "--train.lr", "3e-5", "--train.max_steps=50", "--train.resume",
                        "--model.filter_sizes", "3,5", "--objective.terms", "{ce: 1, scl: 0.3}",
                        "--data", "/d", "--out", "/o")
    expected = load_config(REPO / "configs" / "tiny.yaml", [
        "--train.lr", "3e-5", "--train.max_steps", "50", "--train.resume", "true",
        "--model.filter_sizes", "[3, 5]", "--objective.terms", "{ce: 1.0, scl: 0.3}",
        "--data.dir", "/d", "--train.output_dir", "/o"])
    assert cfg == expected
    assert (cfg.train.lr, cfg.train.resume, cfg.model.filter_sizes) == (3e-5, True, [3, 5])
    assert cfg.model.head == "bert_CNN"  # from the file


def test_defaults_print_as_the_defaults(capsys):
    assert _print_config(capsys) == load_config(None)


@pytest.mark.parametrize("argv,needle", [
    (["--train.lrr", "1"], r"unknown key '--train.lrr' \(did you mean --train.lr\?\)"),
    (["--train.lrr=1"], r"unknown key '--train.lrr' \(did you mean --train.lr\?\)"),
    (["--train.lr", "fast"], "--train.lr: expected float, got 'fast'"),
    (["--model.head", "bert_XL"], "model.head: expected one of bert, bert_CNN"),
    (["--objective.name", "kd", "--objective.terms", "{ce: 1}"], "disagree"),
])
def test_cli_errors_are_one_line_naming_the_key(argv, needle, capsys, caplog):
    from zhcls.cli import main

    assert main(["train", *argv, "--print-config"]) == 2
    assert capsys.readouterr().out == ""
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert re.search(needle, errors[0]), errors[0]


def test_abbreviated_keys_are_not_guessed(caplog):
    from zhcls.cli import main

    assert main(["train", "--train.l", "1", "--print-config"]) == 2
    assert "unknown key '--train.l'" in caplog.text


def test_version(capsys):
    from zhcls import __version__
    from zhcls.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"zhcls {__version__}"


FLOAT_KEYS = [f"{section}.{f.name}"
              for section, cls in (("model", ModelConfig), ("data", DataConfig),
                                   ("train", TrainConfig), ("objective", ObjectiveConfig))
              for f in dataclasses.fields(cls) if f.type in ("float", float)]


def test_there_are_float_keys_to_check():
    assert {"train.lr", "train.max_grad_norm", "objective.temperature",
            "data.teacher_negative_tolerance"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", ".inf", "-.inf"])
def test_every_float_key_rejects_non_finite_values(key, value):
    with pytest.raises(ConfigError, match=rf"{key}: expected a finite number"):
        load_config(None, [f"--{key}", value])


@pytest.mark.parametrize("overrides,needle", [
    (["--train.seed", "-1"], "train.seed: expected an integer >= 0, got -1"),
    (["--train.max_grad_norm", "-1"], "train.max_grad_norm: expected > 0.*or 0 \\(no clipping\\)"),
    (["--train.num_workers", "-2"], "train.num_workers: expected an integer >= 0"),
    (["--train.require_improvement", "-5"], "train.require_improvement: expected an integer >= 0"),
    (["--train.save_total_limit", "0"], "train.save_total_limit: expected an integer >= 1"),
    (["--train.report_max_points", "0"], "train.report_max_points: expected a positive number"),
    (["--data.label_format", "index"], "data.label_format: expected one of auto, id, name"),
    (["--data.teacher_negative", "abs"], "data.teacher_negative: expected one of error, clip"),
    (["--data.teacher_negative_tolerance", "1"], "data.teacher_negative_tolerance: expected a"),
    (["--data.teacher_invalid", "normalize"], "data.teacher_invalid: expected one of skip, error"),
])
def test_out_of_range_values_name_the_key(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, overrides)


def test_max_grad_norm_zero_means_no_clipping():
    assert load_config(None, ["--train.max_grad_norm", "0"]).train.max_grad_norm == 0.0


@pytest.mark.parametrize("value", ["null", "", "[]"])
def test_null_or_empty_clears_a_list_of_paths(value):
    from zhcls.configio import load_config as load
    from zhcls.training.pretrain_config import PretrainConfig

    config = load(REPO / "configs" / "pretrain_tiny.yaml", ["--corpus.data", value],
                  root=PretrainConfig)
    assert config.corpus.data == []


def test_an_empty_item_in_a_list_of_paths_is_an_error_naming_the_flag():
    from zhcls.configio import load_config as load
    from zhcls.training.pretrain_config import PretrainConfig

    with pytest.raises(ConfigError, match=r"--corpus.data: an empty path in"):
        load(None, ["--corpus.data", "a,,b"], root=PretrainConfig)
