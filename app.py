"""Hugging Face Space entry point: the Space runs ``python app.py``; locally it works the same.

The model comes from ``AFFECT_MODEL`` (a Space variable: a Hub id such as ``owner/affectmodel-mtl``)
or, when unset, the default model built on the synthetic benchmark on first start and reused after
(``~/.cache/affectmodel/default-model``; recipe in ``suites/demo.toml``). The launch line names the
model, where it lives and whether it was built or reused. A model that cannot be loaded leaves the
app up with a message in the page. For a Space, ``python -m affectmodel publish-space`` writes a
folder of its own (``--bundle-model`` ships the model inside it, so the Space never trains on
restart). On a Space (``SPACE_ID`` is set) the server binds 0.0.0.0; elsewhere 127.0.0.1. Suggested
Space README front matter::

    ---
    title: affectmodel demo
    sdk: gradio
    sdk_version: 6.31.0
    python_version: "3.11"
    app_file: app.py
    ---
"""
import sys

from demo.app import main

if __name__ == "__main__":
    sys.exit(main())
