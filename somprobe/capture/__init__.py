"""Capture attention rows and hidden states while a model reads or writes tag tokens."""

from somprobe.capture.api import BACKENDS, CaptureResult, capture
from somprobe.capture.collector import BackendUnavailableError
from somprobe.capture.recorder import Recorder, digit_token_filter
from somprobe.capture.teacher import TeacherForced, teacher_force
from somprobe.capture.trace import QueryRecord, Trace

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "CaptureResult",
    "QueryRecord",
    "Recorder",
    "TeacherForced",
    "Trace",
    "capture",
    "digit_token_filter",
    "teacher_force",
]
