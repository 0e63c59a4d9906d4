"""Inference on real images and videos: face detection, alignment, batched prediction,
tracking, temporal smoothing, annotation and the ``predict`` command.

Typical use::

    from affectmodel.inference import Predictor, predict_video
    predictor = Predictor("runs/suite/run")          # model folder, run folder or Hub id
    faces = predictor.predict_image("photo.jpg")     # [{"box", "score", "expression", ...}]
    rows = predict_video(predictor, "clip.mp4")      # per-frame, per-face rows
"""
from .align import align_face, canonical_template, crop_box, face_crop, similarity_transform
from .draw import draw_predictions, face_label
from .faces import DETECTORS, Face, FaceDetector, HaarCascadeDetector, RetinaFaceDetector, create_detector, detect_faces
from .images import ImageLoadError, is_image_file, load_image
from .predictor import Predictor, flatten_record, load_predictor_model, top_expression
from .smoothing import TrackSmoother, exponential_smoothing, moving_average, smooth_series
from .tracking import IoUTracker, iou, iou_matrix
from .video import (AnnotatedVideoWriter, FramePrediction, VideoFrame, VideoInfo, VideoLoadError, VideoOptions,
                    is_video_file, iter_frames, iter_video_predictions, predict_video, probe_video,
                    write_video_frames)

__all__ = [
    "align_face", "canonical_template", "crop_box", "face_crop", "similarity_transform",
    "draw_predictions", "face_label",
    "DETECTORS", "Face", "FaceDetector", "HaarCascadeDetector", "RetinaFaceDetector", "create_detector", "detect_faces",
    "ImageLoadError", "is_image_file", "load_image",
    "Predictor", "flatten_record", "load_predictor_model", "top_expression",
    "TrackSmoother", "exponential_smoothing", "moving_average", "smooth_series",
    "IoUTracker", "iou", "iou_matrix",
    "AnnotatedVideoWriter", "FramePrediction", "VideoFrame", "VideoInfo", "VideoLoadError", "VideoOptions",
    "is_video_file", "iter_frames", "iter_video_predictions", "predict_video", "probe_video", "write_video_frames",
]
