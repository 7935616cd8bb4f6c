"""``dpda serve``: an HTTP API and a web page for screening audio files (FastAPI + uvicorn).

:func:`dpda.serve.app.create_app` builds the application around one scorer
(a PyTorch checkpoint or an ONNX file, see :func:`dpda.deploy.onnx_scorer.load_scorer`);
the page's HTML, CSS and JavaScript ship in ``dpda/serve/static`` (no build
step, nothing fetched from elsewhere). Needs ``pip install -e '.[serve]'``.
"""
