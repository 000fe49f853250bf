"""The FederatedJob and Participant resources: the single source of the CRD schemas and configs."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from fedcare.spec._base import SpecModel
from fedcare.spec.placement import DatasetVolume, EnrollmentRef, Toleration
from fedcare.spec.privacy import DpMode, PrivacyBudget, PrivacySpec, SecureAggregationMode

API_VERSION: Final = "fedcare.io/v1alpha1"
#: Names follow Kubernetes DNS-1123 labels: they become pod, secret and certificate names.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_NAME_RE = re.compile(NAME_PATTERN)

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]


class Task(StrEnum):
    """What the model predicts; decides the loss and the metrics."""

    BINARY_CLASSIFICATION = "binary-classification"
    REGRESSION = "regression"
    #: Time to event with right censoring: a Cox proportional-hazards model (``data.time``,
    #: ``data.event`` instead of ``data.label``).
    SURVIVAL = "survival"


class ModelName(StrEnum):
    """Built-in model families, or ``plugin`` for a user callable."""

    LOGISTIC_REGRESSION = "logistic-regression"
    MLP = "mlp"
    PLUGIN = "plugin"
    #: Linear Cox proportional-hazards model (task ``survival``): one linear layer, no intercept.
    COX = "cox"


class ModelSpec(SpecModel):
    """The network every site trains: a built-in family with hyperparameters, or a plug-in."""

    name: ModelName = ModelName.MLP
    hidden_units: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [64, 64], max_length=16
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: ``package.module:callable``; called as ``callable(num_features, **plugin_args)``.
    plugin: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    plugin_args: dict[str, int | float | str | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _plugin_iff_named(self) -> ModelSpec:
        if self.name is ModelName.PLUGIN and not self.plugin:
            raise ValueError("model.plugin ('module:callable') is required when name is 'plugin'")
        if self.name is not ModelName.PLUGIN and self.plugin:
            raise ValueError("model.plugin is only allowed when name is 'plugin'")
        return self


class DataSchema(SpecModel):
    """Which columns every site's table must have.

    ``label`` is the target of classification and regression; survival instead has ``time``
    (time to the event or to censoring, >= 0) and ``event`` (1 = event observed, 0 = censored).
    Which of them a job needs depends on its task (checked by :class:`FederatedJobSpec`).
    """

    features: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=4096)
    label: str | None = Field(default=None, min_length=1)
    time: str | None = Field(default=None, min_length=1)
    event: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _label_not_feature(self) -> DataSchema:
        for role in ("label", "time", "event"):
            column = getattr(self, role)
            if column is not None and column in self.features:
                raise ValueError(f"{role} column {column!r} is also listed as a feature")
        if len(set(self.features)) != len(self.features):
            raise ValueError("feature columns must be unique")
        if self.time is not None and self.time == self.event:
            raise ValueError(f"time and event name the same column {self.time!r}")
        return self

    @property
    def target_columns(self) -> list[str]:
        """The target column(s): ``[label]``, or ``[time, event]`` for survival."""
        return [c for c in (self.label, self.time, self.event) if c is not None]


class Optimizer(StrEnum):
    """Local optimizer used by each trainer."""

    SGD = "sgd"
    ADAM = "adam"


class TrainingSpec(SpecModel):
    """Local training done by each site in one round."""

    epochs: int | None = Field(default=1, ge=1, le=1000)
    #: When set, trains this many mini-batches per round instead of whole epochs.
    steps: int | None = Field(default=None, ge=1, le=10_000_000)
    batch_size: int = Field(default=256, ge=1, le=1_048_576)
    optimizer: Optimizer = Optimizer.ADAM
    learning_rate: float = Field(default=1e-3, gt=0.0, le=10.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int = Field(default=0, ge=0)


class StrategyName(StrEnum):
    """Registered server-side aggregation strategies (``spec.strategy.name``)."""

    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDADAM = "fedadam"
    FEDYOGI = "fedyogi"
    FEDADAGRAD = "fedadagrad"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed-mean"
    KRUM = "krum"
    MULTI_KRUM = "multi-krum"


#: Which optional ``strategy`` fields each strategy reads (spec field name -> wire name).
_STRATEGY_FIELDS: dict[StrategyName, frozenset[str]] = {
    StrategyName.FEDAVG: frozenset(),
    StrategyName.FEDPROX: frozenset({"mu"}),
    StrategyName.FEDADAM: frozenset({"server_learning_rate", "beta1", "beta2", "tau"}),
    StrategyName.FEDYOGI: frozenset({"server_learning_rate", "beta1", "beta2", "tau"}),
    StrategyName.FEDADAGRAD: frozenset({"server_learning_rate", "beta1", "tau"}),
    StrategyName.MEDIAN: frozenset(),
    StrategyName.TRIMMED_MEAN: frozenset({"trim_fraction"}),
    StrategyName.KRUM: frozenset({"byzantine"}),
    StrategyName.MULTI_KRUM: frozenset({"byzantine", "multi_krum_select"}),
}
_STRATEGY_REQUIRED: dict[StrategyName, tuple[str, ...]] = {
    StrategyName.FEDPROX: ("mu",),
    StrategyName.TRIMMED_MEAN: ("trim_fraction",),
    StrategyName.KRUM: ("byzantine",),
    StrategyName.MULTI_KRUM: ("byzantine",),
}
#: Strategies that look at every update separately (unweighted, robust to outliers).
ROBUST_STRATEGIES: Final = frozenset(
    {
        StrategyName.MEDIAN,
        StrategyName.TRIMMED_MEAN,
        StrategyName.KRUM,
        StrategyName.MULTI_KRUM,
    }
)


class StrategySpec(SpecModel):
    """Server-side aggregation; ``name`` is looked up in the strategy registry."""

    # Every parameter is optional and refused on a strategy that does not read it; left out, a
    # server optimizer takes Flower's default for that optimizer (fedcare.strategies.fedopt).

    name: StrategyName = StrategyName.FEDAVG
    #: FedProx: weight of the proximal term (mu/2)*||w - w_global||^2 in the local loss.
    mu: float | None = Field(default=None, gt=0.0, le=1000.0)
    #: FedAdam/FedYogi/FedAdagrad: server learning rate (eta; default 0.1, FedYogi 0.01).
    server_learning_rate: float | None = Field(default=None, gt=0.0, le=100.0)
    #: Server optimizers: first-moment decay (default 0.9; FedAdagrad 0.0, no momentum).
    beta1: float | None = Field(default=None, ge=0.0, lt=1.0)
    #: FedAdam/FedYogi: second-moment decay (default 0.99).
    beta2: float | None = Field(default=None, ge=0.0, lt=1.0)
    #: Server optimizers: adaptivity, added to sqrt(v) (default 0.001).
    tau: float | None = Field(default=None, gt=0.0, le=10.0)
    #: Trimmed mean: fraction beta of updates dropped at each end, per coordinate.
    trim_fraction: float | None = Field(default=None, ge=0.0, lt=0.5)
    #: Krum/Multi-Krum: number f of Byzantine (arbitrary, possibly colluding) sites tolerated.
    byzantine: int | None = Field(default=None, ge=0, le=10_000)
    #: Multi-Krum: number m of best-scored updates averaged (default: updates received - f).
    multi_krum_select: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _fields_fit_strategy(self) -> StrategySpec:
        allowed = _STRATEGY_FIELDS[self.name]
        for field in type(self).model_fields:
            if field == "name" or getattr(self, field) is None or field in allowed:
                continue
            users = sorted(n.value for n, used in _STRATEGY_FIELDS.items() if field in used)
            raise _field_error(
                (_wire(field),),
                f"applies only to {', '.join(users)}, not {self.name.value!r}",
                getattr(self, field),
            )
        for field in _STRATEGY_REQUIRED.get(self.name, ()):
            if getattr(self, field) is None:
                raise _field_error(
                    (_wire(field),), f"required for {self.name.value!r}", None, "missing"
                )
        return self

    @property
    def proximal_mu(self) -> float:
        """What a trainer passes to ``train_local(proximal_mu=...)``: mu for FedProx, else 0."""
        return self.mu if self.name is StrategyName.FEDPROX and self.mu is not None else 0.0

    @property
    def robust(self) -> bool:
        """Whether the strategy aggregates every update separately (needs them unmasked)."""
        return self.name in ROBUST_STRATEGIES


def _wire(field: str) -> str:
    """The camelCase (manifest) name of a :class:`StrategySpec` field."""
    return StrategySpec.model_fields[field].alias or field


class Metric(StrEnum):
    """Metrics a trainer can compute on its validation split."""

    LOSS = "loss"
    ACCURACY = "accuracy"
    AUROC = "auroc"
    #: Area under the precision-recall curve (average precision).
    AUPRC = "auprc"
    #: Mean squared difference of predicted probability and outcome.
    BRIER = "brier"
    #: Expected calibration error over 10 equal-width probability bins.
    ECE = "ece"
    MSE = "mse"
    MAE = "mae"
    RMSE = "rmse"
    #: Coefficient of determination.
    R2 = "r2"
    #: Harrell's concordance index of a survival model's risk scores.
    CINDEX = "cindex"


_TASK_METRICS: dict[Task, frozenset[Metric]] = {
    Task.BINARY_CLASSIFICATION: frozenset(
        {Metric.LOSS, Metric.ACCURACY, Metric.AUROC, Metric.AUPRC, Metric.BRIER, Metric.ECE}
    ),
    Task.REGRESSION: frozenset({Metric.LOSS, Metric.MSE, Metric.MAE, Metric.RMSE, Metric.R2}),
    Task.SURVIVAL: frozenset({Metric.LOSS, Metric.CINDEX}),
}
_DEFAULT_HEADLINE: dict[Task, Metric] = {
    Task.BINARY_CLASSIFICATION: Metric.AUROC,
    Task.REGRESSION: Metric.MSE,
    Task.SURVIVAL: Metric.CINDEX,
}


def metrics_for(task: Task) -> frozenset[Metric]:
    """The metrics that make sense for ``task``."""
    return _TASK_METRICS[task]


class EvaluationSpec(SpecModel):
    """Federated evaluation after every round (sample-weighted across sites)."""

    #: The metric shown in ``kubectl get fedjobs`` and the summary; default by task.
    headline: Metric | None = None


class RepositorySpec(SpecModel):
    """Where model versions are stored.

    ``uri`` is ``file://`` (a folder; relative paths are relative to the coordinator's working
    folder) or ``s3://bucket/prefix``. Under the operator, the coordinator's working folder is
    an ``emptyDir`` unless ``persistentVolumeClaim`` names a claim: a ``file://`` repository on
    an ``emptyDir`` is lost with the pod, so production jobs set one of the two.
    """

    uri: str = Field(default="file://./fedcare-models", pattern=r"^(file|s3)://.+")
    #: s3:// only: an S3-compatible endpoint (MinIO, Ceph RGW...); else AWS's own.
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    #: s3:// only, Kubernetes only: a Secret in the job's namespace with the keys
    #: ``access_key_id`` and ``secret_access_key`` (and optionally ``session_token``), mounted
    #: into the coordinator. Without it boto3's chain applies (IRSA, instance role...).
    credentials_secret: Name | None = None
    #: Kubernetes only: a PersistentVolumeClaim (in the job's namespace) mounted as the
    #: coordinator's working folder, so that a relative ``file://`` repository and the
    #: enrollment tokens survive the coordinator pod.
    persistent_volume_claim: Name | None = None

    @model_validator(mode="after")
    def _s3_settings_need_s3(self) -> RepositorySpec:
        if not self.uri.startswith("s3://"):
            for field, value in (
                ("endpoint", self.endpoint),
                ("credentialsSecret", self.credentials_secret),
            ):
                if value is not None:
                    raise ValueError(f"{field} applies to s3:// repositories only")
        return self


class DataFormat(StrEnum):
    """On-disk format of a site's table; ``auto`` goes by the file extension."""

    AUTO = "auto"
    CSV = "csv"
    PARQUET = "parquet"


class DataSource(SpecModel):
    """A site's local table. It never leaves the site."""

    path: str = Field(min_length=1)
    format: DataFormat = DataFormat.AUTO
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)


class InlineParticipant(SpecModel):
    """A site listed in the job itself (single machine or single cluster)."""

    name: Name
    data: DataSource
    #: The site's total privacy budget across every job it takes part in (DP jobs only).
    privacy_budget: PrivacyBudget | None = None
    # In a cluster, the operator turns each inline site into a Participant with these fields;
    # the local runner ignores them.
    resources: Resources = Field(default_factory=lambda: Resources())
    volume: DatasetVolume | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)


#: ``spec.initialModel``: a version name, or the URI of a version (root, job, version).
MODEL_REF_PATTERN = (
    r"^(v[0-9]{4,}|(file://.+|s3://[^/]+(/.+)?)/[a-z0-9]([-a-z0-9]*[a-z0-9])?/v[0-9]{4,}/?)$"
)
_MODEL_REF_RE = re.compile(MODEL_REF_PATTERN)


def _field_error(
    loc: tuple[str, ...], message: str, value: object, kind: str = "value_error"
) -> ValidationError:
    """A validation error at ``loc`` (camelCase names, relative to the model raising it), so
    a cross-field check still names the field at fault, e.g. ``spec.data.time``. ``kind``
    ``"missing"`` marks a required field that was left out."""
    return ValidationError.from_exception_data(
        "FederatedJobSpec",
        [
            InitErrorDetails(
                type=PydanticCustomError(kind, message),
                loc=loc,
                input=value,
            )
        ],
    )


class FederatedJobSpec(SpecModel):
    """What to train, with whom, and how."""

    task: Task = Task.BINARY_CLASSIFICATION
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSchema
    rounds: int = Field(ge=1, le=100_000)
    min_participants: int = Field(default=1, ge=1, le=10_000)
    #: Updates needed to close a round (quorum); defaults to minParticipants.
    min_responses: int | None = Field(default=None, ge=1, le=10_000)
    join_timeout_seconds: float = Field(default=300.0, gt=0.0, le=86_400.0)
    round_timeout_seconds: float = Field(default=600.0, gt=0.0, le=86_400.0)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    repository: RepositorySpec = Field(default_factory=RepositorySpec)
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)
    #: Start from a stored model instead of a fresh one (fine-tuning): a version of this job
    #: (``v0003``) or a version's URI (``file://<root>/<job>/<version>``,
    #: ``s3://<bucket>/<prefix>/<job>/<version>``). Its tensors must fit ``model``.
    initial_model: str | None = Field(
        default=None, max_length=2048, json_schema_extra={"pattern": MODEL_REF_PATTERN}
    )
    participants: list[InlineParticipant] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> FederatedJobSpec:
        if self.min_responses is not None and self.min_responses > self.min_participants:
            raise ValueError(
                f"minResponses ({self.min_responses}) cannot exceed minParticipants "
                f"({self.min_participants})"
            )
        names = [p.name for p in self.participants]
        if len(set(names)) != len(names):
            raise ValueError("participant names must be unique")
        # More sites than listed inline may still come (enrolled from other clusters, or
        # Participants created beside the job): only `fedcare run` needs them all inline.
        if self.evaluation.headline and self.evaluation.headline not in metrics_for(self.task):
            raise ValueError(
                f"evaluation.headline {self.evaluation.headline.value!r} does not apply to "
                f"task {self.task.value!r}"
            )
        self._strategy_fits_quorum()
        self._privacy_fits()
        return self

    def _privacy_fits(self) -> None:
        """Refuse privacy settings that cannot work with the rest of the job."""
        secure = self.privacy.secure_aggregation
        if secure.mode is SecureAggregationMode.NONE:
            return
        if self.strategy.robust:
            # Robust strategies look at every update in the clear; secure aggregation shows the
            # coordinator only the sum.
            raise _field_error(
                ("strategy", "name"),
                f"{self.strategy.name.value!r} needs individual updates, which "
                f"privacy.secureAggregation.mode {secure.mode.value!r} hides from the coordinator",
                self.strategy.name.value,
            )
        if self.privacy.dp.mode is DpMode.CENTRAL:
            raise _field_error(
                ("privacy", "dp", "mode"),
                "central DP clips each update on the coordinator, which secure aggregation "
                "hides; use mode 'local' (DP-SGD in each trainer) with secure aggregation",
                self.privacy.dp.mode.value,
            )
        threshold = secure.threshold
        if secure.mode is SecureAggregationMode.MASKING and (threshold or 0) > self.quorum:
            raise _field_error(
                ("privacy", "secureAggregation", "threshold"),
                f"cannot exceed the quorum ({self.quorum}): a round closed at quorum could "
                "never be unmasked",
                threshold,
            )

    @field_validator("initial_model")
    @classmethod
    def _model_ref(cls, value: str | None) -> str | None:
        if value is not None and not _MODEL_REF_RE.fullmatch(value):
            raise ValueError(
                "expected a version of this job (e.g. 'v0003') or a version URI "
                "file://<root>/<job>/<version> or s3://<bucket>/<prefix>/<job>/<version>"
            )
        return value

    @model_validator(mode="after")
    def _task_fits_data_and_model(self) -> FederatedJobSpec:
        data, task = self.data, self.task
        if task is Task.SURVIVAL:
            for role in ("time", "event"):
                if getattr(data, role) is None:
                    raise _field_error(
                        ("data", role), "required when task is 'survival'", None, "missing"
                    )
            if data.label is not None:
                raise _field_error(
                    ("data", "label"),
                    "not used when task is 'survival' (the target is data.time and data.event)",
                    data.label,
                )
            if self.model.name is ModelName.LOGISTIC_REGRESSION:
                raise _field_error(
                    ("model", "name"),
                    "'logistic-regression' does not apply to task 'survival'; use 'cox' or 'mlp'",
                    self.model.name.value,
                )
            return self
        if data.label is None:
            raise _field_error(
                ("data", "label"), f"required when task is {task.value!r}", None, "missing"
            )
        for role in ("time", "event"):
            if getattr(data, role) is not None:
                raise _field_error(
                    ("data", role), "only allowed when task is 'survival'", getattr(data, role)
                )
        if self.model.name is ModelName.COX:
            raise _field_error(
                ("model", "name"), "'cox' applies only to task 'survival'", self.model.name.value
            )
        return self

    def _strategy_fits_quorum(self) -> None:
        """Refuse robust-aggregation settings that cannot work with the round's quorum."""
        strategy, quorum = self.strategy, self.quorum
        of_quorum = f"the quorum (minResponses, else minParticipants) is {quorum}"
        if strategy.name is StrategyName.MEDIAN and quorum < 3:
            raise _field_error(
                ("strategy", "name"),
                f"median needs at least 3 updates per round to outvote an outlier, but {of_quorum}",
                strategy.name.value,
            )
        beta = strategy.trim_fraction or 0.0
        if beta > 0 and beta * quorum < 1:  # 0 is allowed: a plain unweighted mean
            raise _field_error(
                ("strategy", "trimFraction"),
                f"trims no update when {of_quorum}; use at least {1 / quorum:.3g}",
                beta,
            )
        if strategy.byzantine is not None:
            f = strategy.byzantine
            if quorum < 2 * f + 3:
                raise _field_error(
                    ("strategy", "byzantine"),
                    f"{strategy.name.value} with f={f} needs at least 2f+3 = {2 * f + 3} "
                    f"updates per round, but {of_quorum}",
                    f,
                )
            m = strategy.multi_krum_select
            if m is not None and m > quorum - f:
                raise _field_error(
                    ("strategy", "multiKrumSelect"),
                    f"cannot exceed the quorum minus byzantine ({quorum} - {f} = {quorum - f})",
                    m,
                )

    @property
    def quorum(self) -> int:
        """Updates needed to close a round."""
        return self.min_responses if self.min_responses is not None else self.min_participants

    @property
    def headline_metric(self) -> Metric:
        """The metric shown in summaries."""
        return self.evaluation.headline or _DEFAULT_HEADLINE[self.task]


class ObjectMeta(SpecModel):
    """The subset of Kubernetes object metadata fedcare reads."""

    model_config = SpecModel.model_config | {"extra": "ignore"}

    name: Name
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be a lowercase DNS-1123 label")
        return v


class FederatedJob(SpecModel):
    """A FederatedJob manifest: ``apiVersion``, ``kind``, ``metadata``, ``spec``."""

    api_version: Literal["fedcare.io/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["FederatedJob"] = "FederatedJob"
    metadata: ObjectMeta
    spec: FederatedJobSpec


class JobReference(SpecModel):
    """Which job a Participant joins, and where its coordinator listens."""

    name: Name
    #: ``host:port`` of the coordinator's gRPC endpoint.
    endpoint: str | None = Field(default=None, pattern=r"^[^\s:]+:\d{1,5}$")


class Resources(SpecModel):
    """Compute requested for the trainer pod."""

    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = Field(default=0, ge=0, le=16)


class ParticipantSpec(SpecModel):
    """Binds one institution's local dataset to a job."""

    job: JobReference
    data: DataSource
    #: The site's total privacy budget across every job it takes part in (DP jobs only).
    privacy_budget: PrivacyBudget | None = None
    resources: Resources = Field(default_factory=Resources)
    #: The dataset volume, mounted read-only; without one, the folder of ``data.path`` is taken
    #: from the node (hostPath) at the same path.
    volume: DatasetVolume | None = None
    #: Passed through to the trainer pod (e.g. to land on GPU nodes).
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    #: For a site outside the job's cluster: enroll with a one-time token (needs
    #: ``job.endpoint``, the coordinator's gRPC endpoint the trainer then dials).
    enrollment: EnrollmentRef | None = None


class Participant(SpecModel):
    """A Participant manifest."""

    api_version: Literal["fedcare.io/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["Participant"] = "Participant"
    metadata: ObjectMeta
    spec: ParticipantSpec
