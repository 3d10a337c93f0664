"""Capture attention rows and hidden states while a model reads or writes tag tokens."""

from somprobe.capture.api import BACKENDS, CaptureResult, capture
from somprobe.capture.collector import BackendUnavailableError
from somprobe.capture.dataset import capture_dataset
from somprobe.capture.items import CaptureItem, llava_items, toy_eval_items
from somprobe.capture.recorder import Recorder, digit_token_filter
from somprobe.capture.store import StoredRecord, TraceStore, finish_store
from somprobe.capture.teacher import TeacherForced, teacher_force
from somprobe.capture.trace import QueryRecord, Trace

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "CaptureItem",
    "CaptureResult",
    "QueryRecord",
    "Recorder",
    "StoredRecord",
    "TeacherForced",
    "Trace",
    "TraceStore",
    "capture",
    "capture_dataset",
    "digit_token_filter",
    "finish_store",
    "llava_items",
    "teacher_force",
    "toy_eval_items",
]
