"""``zhcls serve``: a FastAPI + uvicorn HTTP service around :class:`zhcls.Classifier` with
micro-batching (:mod:`zhcls.serve.batcher`) and Prometheus metrics (:mod:`zhcls.serve.metrics`).
Build the app with :func:`zhcls.serve.app.create_app`, run it with :func:`zhcls.serve.app.serve`.
"""
