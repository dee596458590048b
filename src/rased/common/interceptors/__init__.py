"""Server interceptors every Rased gRPC server installs."""

from rased.common.interceptors.correlation import CorrelationInterceptor
from rased.common.interceptors.errors import ErrorInterceptor
from rased.common.interceptors.metrics import MetricsInterceptor
from rased.common.interceptors.validation import ValidationInterceptor

__all__ = [
    "CorrelationInterceptor",
    "ErrorInterceptor",
    "MetricsInterceptor",
    "ValidationInterceptor",
]
