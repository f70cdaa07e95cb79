"""``zhcls serve`` start-up, before any model is loaded: flag errors name the flag and come
before the banner, a port already in use is a one-line error, and serving a non-loopback
address without an API key logs a warning. ``Classifier.load`` is replaced by a stub that
stops the start (nothing is loaded, no server runs)."""

from __future__ import annotations

import logging
import socket

import pytest

from zhcls.cli import main
from zhcls.errors import ZhclsError
from zhcls.inference.classifier import Classifier

BANNER = "zhcls serve: http://"


@pytest.fixture()
def loads(monkeypatch) -> list[str]:
    """Paths ``Classifier.load`` was asked for; each call stops the start (exit 2)."""
    calls: list[str] = []

    def fake_load(cls, path, *args, **kwargs):
        calls.append(str(path))
        raise ZhclsError("stub: no model in this test")

    monkeypatch.setattr(Classifier, "load", classmethod(fake_load))
    return calls


def serve(tmp_path, capsys, caplog, *flags: str) -> tuple[int, str, str]:
    with caplog.at_level(logging.INFO):
        code = main(["serve", str(tmp_path), *flags])
    return code, capsys.readouterr().out, caplog.text


def test_threads_below_one_names_the_flag_before_the_banner(tmp_path, capsys, caplog, loads):
    code, out, log = serve(tmp_path, capsys, caplog, "--threads", "0")
    assert code == 2 and "--threads must be >= 1, got 0" in log
    assert BANNER not in out and loads == []


def test_a_port_in_use_is_a_one_line_error_before_the_model_loads(tmp_path, capsys, caplog,
                                                                   loads):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, log = serve(tmp_path, capsys, caplog, "--port", str(port))
    assert code == 2 and loads == [] and BANNER not in out
    (line,) = [ln for ln in log.splitlines() if "ERROR" in ln]
    assert f"--host 127.0.0.1 --port {port}" in line and "already in use" in line
    assert "another --port" in line and "Traceback" not in log


def test_a_non_loopback_host_without_a_key_logs_a_warning(tmp_path, capsys, caplog, loads):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    code, out, log = serve(tmp_path, capsys, caplog, "--host", "0.0.0.0", "--port", str(port))
    assert code == 2 and loads == [str(tmp_path)]  # the stub stopped it after the checks
    (line,) = [ln for ln in log.splitlines() if "WARNING" in ln]
    assert "0.0.0.0" in line and "--api-key-env" in line


def test_which_hosts_need_a_key():
    from zhcls.serve.network import exposure_warning

    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        assert exposure_warning(host, None) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org", ""):
        assert "--api-key-env" in exposure_warning(host, None), host
    assert exposure_warning("0.0.0.0", "a-key") is None
