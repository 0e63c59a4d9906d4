"""Hugging Face Space entry point: the Space runs ``python app.py``; locally it works the same.

The model comes from ``AFFECT_MODEL`` (a Space variable: a Hub id such as ``owner/affectmodel-mtl``)
or, when unset, the default model built on the synthetic benchmark on first start. On a Space
(``SPACE_ID`` is set) the server binds 0.0.0.0; elsewhere 127.0.0.1. Suggested Space README
front matter::

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
