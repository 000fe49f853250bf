from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpdateEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAIN_F32: _ClassVar[UpdateEncoding]
    MASKED: _ClassVar[UpdateEncoding]
    CKKS: _ClassVar[UpdateEncoding]
    DECRYPTED_AGGREGATE: _ClassVar[UpdateEncoding]
PLAIN_F32: UpdateEncoding
MASKED: UpdateEncoding
CKKS: UpdateEncoding
DECRYPTED_AGGREGATE: UpdateEncoding

class DescribeJobRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobDescription(_message.Message):
    __slots__ = ("job", "job_spec_json")
    JOB_FIELD_NUMBER: _ClassVar[int]
    JOB_SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    job: str
    job_spec_json: str
    def __init__(self, job: _Optional[str] = ..., job_spec_json: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("train_samples", "validation_samples", "client_version", "feature_sum", "feature_sum_sq")
    TRAIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SUM_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SUM_SQ_FIELD_NUMBER: _ClassVar[int]
    train_samples: int
    validation_samples: int
    client_version: str
    feature_sum: _containers.RepeatedScalarFieldContainer[float]
    feature_sum_sq: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, train_samples: _Optional[int] = ..., validation_samples: _Optional[int] = ..., client_version: _Optional[str] = ..., feature_sum: _Optional[_Iterable[float]] = ..., feature_sum_sq: _Optional[_Iterable[float]] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("session_id", "participant", "job")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    participant: str
    job: str
    def __init__(self, session_id: _Optional[str] = ..., participant: _Optional[str] = ..., job: _Optional[str] = ...) -> None: ...

class TasksRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("kind", "round", "model_version", "deadline_seconds", "message", "succeeded", "payload", "weight")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Task.Kind]
        TRAIN: _ClassVar[Task.Kind]
        EVALUATE: _ClassVar[Task.Kind]
        DONE: _ClassVar[Task.Kind]
        SECAGG_ADVERTISE: _ClassVar[Task.Kind]
        SECAGG_SHARE_KEYS: _ClassVar[Task.Kind]
        SECAGG_UNMASK: _ClassVar[Task.Kind]
        DECRYPT_AGGREGATE: _ClassVar[Task.Kind]
    KIND_UNSPECIFIED: Task.Kind
    TRAIN: Task.Kind
    EVALUATE: Task.Kind
    DONE: Task.Kind
    SECAGG_ADVERTISE: Task.Kind
    SECAGG_SHARE_KEYS: Task.Kind
    SECAGG_UNMASK: Task.Kind
    DECRYPT_AGGREGATE: Task.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    kind: Task.Kind
    round: int
    model_version: str
    deadline_seconds: float
    message: str
    succeeded: bool
    payload: bytes
    weight: float
    def __init__(self, kind: _Optional[_Union[Task.Kind, str]] = ..., round: _Optional[int] = ..., model_version: _Optional[str] = ..., deadline_seconds: _Optional[float] = ..., message: _Optional[str] = ..., succeeded: _Optional[bool] = ..., payload: _Optional[bytes] = ..., weight: _Optional[float] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("session_id", "model_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    model_version: str
    def __init__(self, session_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data", "total_bytes")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_bytes: int
    def __init__(self, data: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("name", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("session_id", "round", "base_version", "num_samples", "tensors", "train_metrics", "encoding", "epsilon")
    class TrainMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_METRICS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    base_version: str
    num_samples: int
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    train_metrics: _containers.ScalarMap[str, float]
    encoding: UpdateEncoding
    epsilon: float
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ..., base_version: _Optional[str] = ..., num_samples: _Optional[int] = ..., tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., train_metrics: _Optional[_Mapping[str, float]] = ..., encoding: _Optional[_Union[UpdateEncoding, str]] = ..., epsilon: _Optional[float] = ...) -> None: ...

class UpdateChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UpdateHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UpdateHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadAck(_message.Message):
    __slots__ = ("accepted", "detail")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    detail: str
    def __init__(self, accepted: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class EvaluationReport(_message.Message):
    __slots__ = ("session_id", "round", "model_version", "num_samples", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    model_version: str
    num_samples: int
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ..., model_version: _Optional[str] = ..., num_samples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PrivacyMessage(_message.Message):
    __slots__ = ("session_id", "round", "phase", "payload")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    phase: Task.Kind
    payload: bytes
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ..., phase: _Optional[_Union[Task.Kind, str]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("session_id", "reason", "message", "epsilon")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    reason: str
    message: str
    epsilon: float
    def __init__(self, session_id: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., epsilon: _Optional[float] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusEvent(_message.Message):
    __slots__ = ("status_json",)
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    status_json: str
    def __init__(self, status_json: _Optional[str] = ...) -> None: ...
