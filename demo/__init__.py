"""The Gradio demo: images, videos and webcam in the browser (``python -m demo.app``)."""
