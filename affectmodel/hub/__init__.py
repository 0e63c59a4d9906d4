"""Publishing runs to and loading models from the Hugging Face Hub.

``loading`` (load_model, model_info: local folder, run folder or repo id), ``card`` (model cards
with model-index results), ``publish`` (the ``publish`` command), ``space`` (the ``publish-space``
command), ``results`` (published runs for the dashboard). Submodules are imported on use.
"""
