"""The remote API: wire models, the async client and its error taxonomy.

This package is the only code that speaks HTTP to Agora Cloud Recording. The local
emulator of the API is its own package above this one (`orchestrator.emulator`,
aiohttp in the optional extra `emulator`); nothing here imports it.
"""

from orchestrator.agora.client import AgoraClient
from orchestrator.agora.errors import (
    AgoraError,
    AlreadyStartedError,
    AmbiguousStartError,
    ConflictError,
    ForeignAnswerError,
    InvalidRequestError,
    NoFilesError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecordingExistsError,
    ResourceExpiredError,
    RetryableError,
    SessionUnknownError,
    StopAlreadyEndedError,
    error_from_response,
)
from orchestrator.agora.pacing import (
    DEFAULT_QUERY_SHARE,
    RateLimiter,
    RetryPolicy,
    query_cycle_seconds,
    query_slots,
    query_spacing,
)
from orchestrator.agora.wire import QueryResponse, StopResponse

__all__ = [
    "DEFAULT_QUERY_SHARE",
    "AgoraClient",
    "AgoraError",
    "AlreadyStartedError",
    "AmbiguousStartError",
    "ConflictError",
    "ForeignAnswerError",
    "InvalidRequestError",
    "NoFilesError",
    "NotFoundError",
    "PermanentError",
    "QueryResponse",
    "RateLimitedError",
    "RateLimiter",
    "RecordingExistsError",
    "ResourceExpiredError",
    "RetryPolicy",
    "RetryableError",
    "SessionUnknownError",
    "StopAlreadyEndedError",
    "StopResponse",
    "error_from_response",
    "query_cycle_seconds",
    "query_slots",
    "query_spacing",
]
