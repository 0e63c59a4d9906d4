"""Inference on real images and videos: face detection, alignment, batched prediction,
tracking, temporal smoothing, annotation and the ``predict`` command.

Typical use::

    from affectmodel.inference import Predictor, predict_video
    predictor = Predictor("runs/suite/run")          # model folder, run folder or Hub id
    faces = predictor.predict_image("photo.jpg")     # [{"box", "score", "expression", ...}]
    rows = predict_video(predictor, "clip.mp4")      # per-frame, per-face rows
"""
from ..lazy import lazy_getattr

# Names are imported on first use (the safe image loader lives in affectmodel.images, below both
# data and inference): importing the package must not pay for OpenCV, onnxruntime and PyAV.
_EXPORTS = {
    "align_face": ".align",
    "canonical_template": ".align",
    "crop_box": ".align",
    "face_crop": ".align",
    "similarity_transform": ".align",
    "draw_predictions": ".draw",
    "face_label": ".draw",
    "DEFAULT_DETECT_MAX_SIDE": ".faces",
    "DETECTORS": ".faces",
    "Face": ".faces",
    "FaceDetector": ".faces",
    "HaarCascadeDetector": ".faces",
    "RetinaFaceDetector": ".faces",
    "create_detector": ".faces",
    "detect_faces": ".faces",
    "detection_scale": ".faces",
    "ImageLoadError": "..images",
    "is_image_file": "..images",
    "load_image": "..images",
    "NonFiniteOutputError": ".predictor",
    "Predictor": ".predictor",
    "flatten_record": ".predictor",
    "largest_face": ".predictor",
    "load_predictor_model": ".predictor",
    "top_expression": ".predictor",
    "TrackSmoother": ".smoothing",
    "exponential_smoothing": ".smoothing",
    "moving_average": ".smoothing",
    "smooth_series": ".smoothing",
    "IoUTracker": ".tracking",
    "iou": ".tracking",
    "iou_matrix": ".tracking",
    "AnnotatedVideoWriter": ".video",
    "FramePrediction": ".video",
    "VideoFrame": ".video",
    "VideoInfo": ".video",
    "VideoLoadError": ".video",
    "VideoOptions": ".video",
    "is_video_file": ".video",
    "iter_frames": ".video",
    "iter_video_predictions": ".video",
    "predict_video": ".video",
    "probe_video": ".video",
    "write_video_frames": ".video",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = [
    "align_face", "canonical_template", "crop_box", "face_crop", "similarity_transform",
    "draw_predictions", "face_label",
    "DEFAULT_DETECT_MAX_SIDE", "DETECTORS", "Face", "FaceDetector", "HaarCascadeDetector", "RetinaFaceDetector", "create_detector", "detect_faces", "detection_scale",
    "ImageLoadError", "is_image_file", "load_image",
    "NonFiniteOutputError", "Predictor", "flatten_record", "largest_face", "load_predictor_model", "top_expression",
    "TrackSmoother", "exponential_smoothing", "moving_average", "smooth_series",
    "IoUTracker", "iou", "iou_matrix",
    "AnnotatedVideoWriter", "FramePrediction", "VideoFrame", "VideoInfo", "VideoLoadError", "VideoOptions",
    "is_video_file", "iter_frames", "iter_video_predictions", "predict_video", "probe_video", "write_video_frames",
]
