"""A fault-injecting OpenAI-compatible chat-completions server for the ``zhcls label`` tests.

It runs FastAPI under uvicorn on 127.0.0.1 (free port) in a background thread, finds the
sentence in the prompt (between the ``<<<`` / ``>>>`` markers of the shipped templates),
answers from the gold label it was given, and injects faults chosen deterministically per
text by :func:`fault_for` (md5 of the text). It counts every hit, every well-formed answer
and every injected fault, and records the Authorization headers it saw.

Faults: HTTP 429 / 500 (once or always), answers slower than the client timeout, truncated
JSON, an HTTP 200 with an empty ``choices`` list (once or always), messy but repairable
answers (prose, fences, percentages, sums of 80 or 801, missing classes, full-width forms,
extra names with probability 0, the gold class misspelt so that it matches one class
unambiguously) and answers that give the gold probability to a name that is no class
(``unknown_once`` / ``unknown_always``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from zhcls.label.parse import choice_labels

# (fault, per-mille share) — the rest of the texts get a clean answer ("ok").
FAULT_TABLE = (
    ("rate_limit_once", 40), ("rate_limit_always", 6), ("server_error_once", 40),
    ("server_error_always", 6), ("slow_once", 15), ("slow_always", 4),
    ("truncated_once", 40), ("truncated_always", 8), ("echo_key_400", 4), ("prose", 60),
    ("fenced", 60), ("percent_strings", 40), ("sum_80", 40), ("sum_801", 40),
    ("missing", 40), ("unknown_zero", 10), ("unknown_once", 10), ("unknown_always", 5),
    ("misspelt", 15), ("fullwidth", 40), ("wrong", 30), ("empty_choices_once", 30),
    ("empty_choices_always", 4),
)
ONCE = {"rate_limit_once", "server_error_once", "slow_once", "truncated_once", "unknown_once",
        "empty_choices_once"}
UNKNOWN_NAME = "其他类别"  # the name the unknown_* faults give the gold probability to
GOLD_P = 0.85
_TEXT = re.compile(r"<<<\n(.*?)\n>>>", re.DOTALL)


def fault_for(text: str) -> str:
    """The fault injected for ``text`` (deterministic)."""
    bucket = int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16) % 1000
    for fault, share in FAULT_TABLE:
        if bucket < share:
            return fault
        bucket -= share
    return "ok"


def expected_outcome(fault: str) -> str | None:
    """The failure kind the client should report for a fault (None: labelled)."""
    return {"rate_limit_always": "http_429_exhausted", "server_error_always": "http_5xx_exhausted",
            "slow_always": "timeout", "truncated_always": "unparseable",
            "echo_key_400": "http_400", "unknown_always": "unknown_class",
            "empty_choices_always": "empty_choices"}.get(fault)


class LLMTestServer:
    """``with LLMTestServer(class_names, gold) as server: server.base_url ...``"""

    def __init__(self, class_names: list[str], gold: dict[str, int], *, faults: bool = True,
                 support_n: bool = True, delay: float = 0.0, slow_seconds: float = 0.6,
                 retry_after: str = "0.01", fatal_status: int | None = None,
                 force_fault: str | None = None, reject_n: bool = False):
        self.class_names, self.gold, self.faults = class_names, gold, faults
        self.support_n, self.delay, self.slow_seconds = support_n, delay, slow_seconds
        self.retry_after, self.fatal_status = retry_after, fatal_status
        self.force_fault = force_fault        # same fault for every text (unit-style tests)
        self.reject_n = reject_n              # answer HTTP 400 to n > 1 (like some providers)
        self.hits: Counter = Counter()        # every request, per text
        self.successes: Counter = Counter()   # well-formed answers served, per text
        self.injected: Counter = Counter()    # fault events (429s, 500s, slow, truncated...)
        self.auth_headers: set[str | None] = set()
        self.usage = Counter()                # usage reported in responses the client got
        self.bodies: list[dict] = []
        self.app = self._make_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test LLM server did not start within 10 s")
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> LLMTestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())

    # ------------------------------------------------------------------ behaviour
    def _make_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):  # noqa: ANN202 - FastAPI handler
            try:
                body = await request.json()
            except ClientDisconnect:  # the client timed out before sending the body
                return Response(status_code=499)
            auth = request.headers.get("authorization")
            self.auth_headers.add(auth)
            self.bodies.append(body)
            return await self._answer(body, auth)

        return app

    def _find_text(self, prompt: str) -> str | None:
        match = _TEXT.search(prompt)
        if match and match.group(1) in self.gold:
            return match.group(1)
        found = [t for t in self.gold if t in prompt]
        return max(found, key=len) if found else None

    async def _answer(self, body: dict, auth: str | None) -> JSONResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fatal_status:
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {auth}"}},
                                status_code=self.fatal_status)
        if self.reject_n and int(body.get("n", 1)) > 1:
            return JSONResponse({"error": {"message": "n must be 1"}}, status_code=400)
        prompt = body["messages"][-1]["content"]
        text = self._find_text(prompt)
        if text is None:
            return JSONResponse({"error": {"message": "unknown text"}}, status_code=400)
        self.hits[text] += 1
        fault = self.force_fault or (fault_for(text) if self.faults else "ok")
        if fault in ONCE and self.hits[text] > 1:
            fault = "ok"
        error = self._http_fault(fault, auth)
        if error is not None:
            return error
        if fault.startswith("slow"):
            self.injected["slow"] += 1
            await asyncio.sleep(self.slow_seconds)
        if fault.startswith("empty_choices"):  # seen from overloaded proxies and gateways
            self.injected["empty_choices"] += 1
            return JSONResponse({"id": "chatcmpl-test", "object": "chat.completion",
                                 "model": body.get("model"), "choices": [],
                                 "usage": {"prompt_tokens": 0, "completion_tokens": 0,
                                           "total_tokens": 0}})
        n = int(body.get("n", 1)) if self.support_n else 1
        choices = [self._choice(text, fault, body, i) for i in range(n)]
        usage = {"prompt_tokens": len(prompt), "completion_tokens":
                 sum(len(c["message"]["content"]) for c in choices)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not fault.startswith("slow"):
            self.usage.update(usage)
        if not fault.startswith("truncated"):
            self.successes[text] += 1
        return JSONResponse({"id": "chatcmpl-test", "object": "chat.completion",
                             "model": body.get("model"), "choices": choices, "usage": usage})

    def _http_fault(self, fault: str, auth: str | None) -> JSONResponse | None:
        if fault.startswith("rate_limit"):
            self.injected["429"] += 1
            return JSONResponse({"error": {"message": "rate limited"}}, status_code=429,
                                headers={"Retry-After": self.retry_after})
        if fault.startswith("server_error"):
            self.injected["500"] += 1
            return JSONResponse({"error": {"message": "internal error"}}, status_code=500)
        if fault == "echo_key_400":
            self.injected["400"] += 1
            return JSONResponse({"error": {"message": f"bad request, your header was {auth}"}},
                                status_code=400)
        return None

    def _choice(self, text: str, fault: str, body: dict, index: int) -> dict:
        gold = self.gold[text]
        k = len(self.class_names)
        target = (gold + 1) % k if fault == "wrong" else gold
        probs = [(1 - GOLD_P) / (k - 1)] * k
        probs[target] = GOLD_P
        if body.get("logprobs"):
            return self._logprob_choice(probs, index)
        content = render_fault(fault, self.class_names, probs)
        if fault.startswith("truncated"):
            self.injected["truncated"] += 1
        if fault.startswith("unknown_") and fault != "unknown_zero":
            self.injected["unknown_class"] += 1
        return {"index": index, "message": {"role": "assistant", "content": content},
                "finish_reason": "length" if fault.startswith("truncated") else "stop"}

    def _logprob_choice(self, probs: list[float], index: int) -> dict:
        codes = choice_labels(len(probs))
        top = [{"token": c, "logprob": math.log(p), "bytes": None}
               for c, p in sorted(zip(codes, probs, strict=True), key=lambda cp: -cp[1])]
        best = top[0]["token"]
        return {"index": index, "message": {"role": "assistant", "content": best},
                "logprobs": {"content": [{"token": best, "logprob": top[0]["logprob"],
                                          "top_logprobs": top}]},
                "finish_reason": "length"}


def render_fault(fault: str, names: list[str], probs: list[float]) -> str:
    """The answer text for a fault (what a messy LLM would write)."""
    obj = dict(zip(names, probs, strict=True))
    plain = json.dumps(obj, ensure_ascii=False)
    if fault == "prose":
        return f"好的，我来分析一下这段文本。\n{plain}\n以上就是各类别的概率。"
    if fault == "fenced":
        return "```json\n" + json.dumps(obj, ensure_ascii=False, indent=2) + "\n```"
    if fault == "percent_strings":
        return json.dumps({n: f"{p * 100:.1f}%" for n, p in obj.items()}, ensure_ascii=False)
    if fault in ("sum_80", "sum_801"):
        scale = 80 if fault == "sum_80" else 801
        return json.dumps({n: round(p * scale, 3) for n, p in obj.items()}, ensure_ascii=False)
    gold = max(obj, key=obj.get)
    if fault == "missing":
        other = next(n for n in names if n != gold)
        return json.dumps({gold: obj[gold], other: obj[other]}, ensure_ascii=False)
    if fault == "unknown_zero":  # extra names with probability 0 carry no mass: ignored
        return json.dumps({**obj, "其他": 0, "unknown_class": 0.0}, ensure_ascii=False)
    if fault in ("unknown_once", "unknown_always"):  # the gold mass goes to a non-class
        return json.dumps({UNKNOWN_NAME if n == gold else n: p for n, p in obj.items()},
                          ensure_ascii=False)
    if fault == "misspelt":
        return json.dumps({misspell(n) if n == gold else n: p for n, p in obj.items()},
                          ensure_ascii=False)
    if fault == "fullwidth":
        items = [f'"　{_fullwidth(n.upper())} "：{p}' for n, p in obj.items()]
        return "｛" + "，".join(items) + "｝"
    if fault.startswith("truncated"):
        return plain[: len(plain) // 2]
    return plain


def misspell(name: str) -> str:
    """A misspelling of a class name that still matches it unambiguously: an ASCII name
    loses its second letter (``sports`` → ``sorts``), a Chinese one gets a suffix
    (``体育`` → ``体育类``)."""
    return name[0] + name[2:] if name.isascii() and len(name) >= 4 else name + "类"


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


# ------------------------------------------------------------------- test datasets
REPO = Path(__file__).resolve().parents[1]
SHARED_THUCNEWS = REPO / ".." / "shared" / "data" / "thucnews"
SYNTHETIC_CLASSES = ["财经", "房产", "股票", "教育", "科技", "社会", "时政", "体育", "游戏", "娱乐"]
_SUBJECTS = ["央行", "开发商", "沪指", "教育部", "科学家", "市民", "外交部", "国足", "玩家", "歌手"]
_EVENTS = ["宣布新政策", "发布年度报告", "大幅上涨", "召开会议", "取得突破", "引发热议",
           "举行会谈", "赢得比赛", "迎来更新", "举办演唱会"]


def headlines(n: int) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, the first ``n`` distinct (headline, label) pairs): real THUCNews
    headlines from ``../shared/data/thucnews`` when present, else synthetic ones."""
    train, classes = SHARED_THUCNEWS / "train.txt", SHARED_THUCNEWS / "class.txt"
    if train.is_file() and classes.is_file():
        names = [ln.strip() for ln in classes.read_text(encoding="utf-8").splitlines()
                 if ln.strip()]
        rows: dict[str, int] = {}
        for line in train.read_text(encoding="utf-8").splitlines():
            text, _, label = line.partition("\t")
            if text.strip() and label.strip().isdigit():
                rows.setdefault(text.strip(), int(label))
            if len(rows) >= n:
                return names, list(rows.items())
    rows = {}
    for i in range(n):
        label = i % len(SYNTHETIC_CLASSES)
        text = f"{_SUBJECTS[label]}{_EVENTS[(i * 7) % len(_EVENTS)]}（第{i}号，{i * 37 % 101}）"
        rows[text] = label
    return SYNTHETIC_CLASSES, list(rows.items())


def make_dataset(root: Path, names: list[str], rows: list[tuple[str, int]]) -> Path:
    """``root/`` with class.txt, train.txt (the rows) and a small dev.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    body = "".join(f"{t}\t{label}\n" for t, label in rows)
    (root / "train.txt").write_text(body, encoding="utf-8")
    (root / "dev.txt").write_text("".join(f"{t}\t{label}\n" for t, label in rows[:5]),
                                  encoding="utf-8")
    return root
