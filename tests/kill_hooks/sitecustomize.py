"""Test instrumentation for tests/test_resume_kill.py (not part of zhcls): Python imports this
module at start-up when tests/kill_hooks is on PYTHONPATH. It does nothing unless
ZHCLS_TEST_BATCH_LOG is set; then it patches the Trainer of the ``python -m zhcls train``
process under test:

* every training batch appends ``STEP<TAB>DIGEST`` to $ZHCLS_TEST_BATCH_LOG (the data order),
  then sleeps $ZHCLS_TEST_STEP_SLEEP seconds (so the test can kill it at a step);
* with $ZHCLS_TEST_SAVE_MARKER set, a checkpoint save writes that file half-way (model and
  optimizer written, RNG state and trainer state not yet) and sleeps 60 s, so the test can
  kill the process inside the save.
"""

from __future__ import annotations

import os

if os.environ.get("ZHCLS_TEST_BATCH_LOG"):
    import hashlib
    import time

    from zhcls.training.trainer import ZhclsTrainer

    _compute_loss = ZhclsTrainer.compute_loss
    _save_rng_state = ZhclsTrainer._save_rng_state

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            ids = inputs["input_ids"][inputs["attention_mask"].bool()].tolist()
            digest = hashlib.sha1(str(ids).encode()).hexdigest()[:16]
            with open(os.environ["ZHCLS_TEST_BATCH_LOG"], "a", encoding="utf-8") as f:
                f.write(f"{self.state.global_step}\t{digest}\n")
            time.sleep(float(os.environ.get("ZHCLS_TEST_STEP_SLEEP", "0")))
        return _compute_loss(self, model, inputs, *args, **kwargs)

    def save_rng_state(self, output_dir):
        marker = os.environ.get("ZHCLS_TEST_SAVE_MARKER")
        if marker:
            with open(marker, "w", encoding="utf-8") as f:
                f.write(f"{self.state.global_step}\t{output_dir}\n")
            time.sleep(60)
        return _save_rng_state(self, output_dir)

    ZhclsTrainer.compute_loss = compute_loss
    ZhclsTrainer._save_rng_state = save_rng_state
