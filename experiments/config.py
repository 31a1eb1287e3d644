"""Experiment configs: a TOML file -> ExperimentConfig (workload x engine x predictor x policies).

    name = "demo"                      # optional; defaults to the file name
    seed = 0
    policies = ["fcfs", "edf", "sjf"]
    [workload]   ... (experiments.workloads.spec.WorkloadConfig; sub-tables mix, latency, ...)
    [engine]     profile = "llama3-8b-h100"   plus any EngineSpec field as an override
    [predictor]  name = "noisy"               plus the predictor's parameters
    [policy_params.<policy>]                  parameters of one policy
    [sweep]      rate_scales = [...]  seeds = [...]  prefix_caching = [true, false]

Every key is checked: an unknown key or a wrong name is a ConfigError saying what is valid,
because a typo silently falling back to a default would measure a different experiment.
`to_dict` writes the same shape back, so recorded results can be re-run.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from experiments.errors import ConfigError
from experiments.input_files import read_text, safe_name
from experiments.values import checked, seed
from experiments.workloads.trace_loader import Columns
from experiments.workloads.spec import Dist, WorkloadConfig
from formulations.engine_spec import EngineSpec
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.requests import ValidationError
from solvers.policies.registry import make_policy, policy_class, policy_names
from solvers.prediction.registry import make_predictor, predictor_class
from solvers.named import parameters

DEFAULT_PROFILE = "llama3-8b-h100"
ENGINE_KEYS = tuple(f.name for f in dataclasses.fields(EngineSpec) if f.name != "latency")
TOP_KEYS = ("name", "description", "seed", "qoe_threshold", "policies", "policy_params",
            "workload", "engine", "predictor", "sweep")


@dataclass(frozen=True)
class EngineConfig:
    """A named latency/hardware profile plus EngineSpec overrides (kv_blocks, slot_time, ...)."""

    profile: str = DEFAULT_PROFILE
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self) -> EngineSpec:
        try:
            return EngineSpec.from_profile(self.profile, **self.overrides)
        except (ValidationError, TypeError) as err:
            raise ConfigError(f"[engine] {err}") from None


@dataclass(frozen=True)
class PredictorConfig:
    name: str = "oracle"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepConfig:
    """Points to run besides the base one: every rate_scale x seed x prefix_caching (empty = the
    base value; prefix_caching sets engine.enable_prefix_caching per variant)."""

    rate_scales: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    prefix_caching: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        for k, value in enumerate(self.seeds):
            seed(value, f"sweep.seeds[{k}]")
        for k, value in enumerate(self.rate_scales):
            checked(value, float, f"sweep.rate_scales[{k}]", gt=0)
        for k, value in enumerate(self.prefix_caching):
            checked(value, bool, f"sweep.prefix_caching[{k}]")
        for key, values in (("seeds", self.seeds), ("rate_scales", self.rate_scales),
                            ("prefix_caching", self.prefix_caching)):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ConfigError(f"sweep.{key} = {list(values)}: {repeated[0]!r} is listed twice (each cell "
                                  "would run twice)")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    policies: tuple[str, ...]
    workload: WorkloadConfig = WorkloadConfig()
    engine: EngineConfig = EngineConfig()
    predictor: PredictorConfig = PredictorConfig()
    policy_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: SweepConfig = SweepConfig()
    seed: int = 0
    qoe_threshold: float = DEFAULT_QOE_THRESHOLD
    description: str = ""

    def validate(self) -> None:
        """Check every name against its registry by building each part once."""
        if not 0 < self.qoe_threshold <= 1:
            raise ConfigError(f"qoe_threshold={self.qoe_threshold} must be in (0, 1]")
        for name in self.policies:
            try:
                policy_class(name)
            except ValidationError as err:
                raise ConfigError(f"policies: {err}") from None
        stray = set(self.policy_params) - set(self.policies)
        if stray:
            raise ConfigError(f"policy_params: {sorted(stray)} not in policies {list(self.policies)}")
        for name in self.policies:
            try:
                make_policy(name, **self.policy_kwargs(name))
            except (ValidationError, TypeError, ValueError) as err:
                raise ConfigError(f"[policy_params.{name}] {err}") from None
        try:
            predictor_class(self.predictor.name)
        except ValidationError as err:
            raise ConfigError(f"predictor: {err}") from None
        try:
            make_predictor(self.predictor.name, **self.predictor.params)
        except (ValidationError, TypeError, ValueError) as err:
            raise ConfigError(f"[predictor] {err}") from None
        self.engine.build()

    def caching_variants(self) -> list[ExperimentConfig]:
        """The config once per sweep.prefix_caching value (engine.enable_prefix_caching set), or
        itself alone."""
        return [replace(self, engine=EngineConfig(self.engine.profile, {**self.engine.overrides,
                                                                        "enable_prefix_caching": on}))
                for on in self.sweep.prefix_caching] or [self]

    def policy_kwargs(self, name: str) -> dict[str, Any]:
        """The configured parameters of policy `name`; a policy that plans for a QoE threshold
        gets the config's `qoe_threshold` (the one it is scored at) unless its table sets one."""
        params = dict(self.policy_params.get(name, {}))
        if "qoe_threshold" in parameters(policy_class(name)):
            params.setdefault("qoe_threshold", self.qoe_threshold)
        return params

    def to_dict(self) -> dict[str, Any]:
        """The TOML shape (None values left out), loadable again by `config_from_dict`."""
        return _drop_none({
            "name": self.name, "description": self.description, "seed": self.seed,
            "qoe_threshold": self.qoe_threshold, "policies": list(self.policies),
            "policy_params": self.policy_params,
            "workload": dataclasses.asdict(self.workload),
            "engine": {"profile": self.engine.profile, **self.engine.overrides},
            "predictor": {"name": self.predictor.name, **self.predictor.params},
            "sweep": dataclasses.asdict(self.sweep),
        })


def read_toml(path: str | Path) -> dict[str, Any]:
    """The one TOML reader of every config kind (experiment, gap study, serve-eval): a missing
    file or invalid TOML is a `ConfigError` naming the file."""
    text = read_text(path, "config file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def load_config(path: str | Path) -> ExperimentConfig:
    return config_from_dict(read_toml(path), default_name=Path(path).stem)


def config_from_dict(data: dict[str, Any], default_name: str = "experiment") -> ExperimentConfig:
    _check_keys(data, TOP_KEYS, "config")
    policies = data.get("policies")
    if not isinstance(policies, list) or not policies or not all(isinstance(p, str) for p in policies):
        raise ConfigError(f"policies = {policies!r}: need a non-empty list of names; valid: {', '.join(policy_names())}")
    policy_params = data.get("policy_params", {})
    if not isinstance(policy_params, dict) or not all(isinstance(v, dict) for v in policy_params.values()):
        raise ConfigError("policy_params: need one table per policy, e.g. [policy_params.edf]")
    engine = dict(_table(data, "engine"))
    _check_keys(engine, ("profile", *ENGINE_KEYS), "engine")
    engine_types = get_type_hints(EngineSpec)
    overrides = {k: _convert(engine_types[k], v, f"engine.{k}") for k, v in engine.items() if k != "profile"}
    predictor = dict(_table(data, "predictor"))
    config = ExperimentConfig(
        name=safe_name(_typed(data["name"], str, "name"), "name") if "name" in data else _file_name(default_name),
        description=_typed(data.get("description", ""), str, "description"),
        seed=seed(data.get("seed", 0), "seed"),
        qoe_threshold=_convert(float, data.get("qoe_threshold", DEFAULT_QOE_THRESHOLD), "qoe_threshold"),
        policies=tuple(policies),
        policy_params={k: dict(v) for k, v in policy_params.items()},
        workload=from_mapping(WorkloadConfig, _table(data, "workload"), "workload"),
        engine=EngineConfig(profile=_typed(engine.get("profile", DEFAULT_PROFILE), str, "engine.profile"),
                            overrides=overrides),
        predictor=PredictorConfig(name=_typed(predictor.pop("name", "oracle"), str, "predictor.name"),
                                  params=predictor),
        sweep=from_mapping(SweepConfig, _table(data, "sweep"), "sweep"),
    )
    config.validate()
    return config


def with_overrides(config: ExperimentConfig, *, trace: str | None = None, columns: dict[str, str] | None = None,
                   time_unit: str | None = None, policies: list[str] | None = None, limit: int | None = None,
                   rate_scale: float | None = None, seed: int | None = None, whole_trace: bool = False,
                   own_rate: bool = False) -> ExperimentConfig:
    """The command-line overrides of `slosched run`; None leaves a field as the config has it.
    `whole_trace` drops the config's limit, `own_rate` its rate_scale (a trace of the user's)."""
    workload = config.workload
    changes: dict[str, Any] = {}
    if whole_trace:
        changes["limit"] = None
    if own_rate:
        changes["rate_scale"] = 1.0
    if trace is not None:
        changes["trace"] = trace
        changes["columns"] = None  # a new file: the registry's or the default column names
    if columns is not None:
        changes["columns"] = Columns(**{**Columns().as_dict(), **columns})
    if time_unit is not None:
        changes["time_unit"] = time_unit
    if limit is not None:
        changes["limit"] = limit
    if rate_scale is not None:
        changes["rate_scale"] = rate_scale
    if changes:
        workload = replace(workload, **changes)
    updated = replace(
        config,
        workload=workload,
        policies=tuple(policies) if policies is not None else config.policies,
        policy_params={k: v for k, v in config.policy_params.items() if policies is None or k in policies},
        seed=config.seed if seed is None else seed,
    )
    updated.validate()
    return updated


# ---- a small typed loader for the dataclasses of a config section ---------------------------
def from_mapping(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a TOML table: unknown keys are errors, values are type-checked."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(data, names, where)
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items() if v is not None}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if cls is Dist:
            raise ConfigError(f"{where}: {err}") from None
        raise


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if tp is Dist and _is_number(value):
        return Dist(kind="fixed", value=float(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} = {value!r}: expected a table")
        return from_mapping(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where} = {value!r}: expected a list")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} = {value!r}: expected a table")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    return _typed(value, tp, where)


def _typed(value: Any, tp: type, where: str) -> Any:
    return float(checked(value, tp, where)) if tp is float else checked(value, tp, where)


def _file_name(stem: str) -> str:
    """A config file's name as an experiment name: characters a folder name cannot safely hold
    become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem).lstrip(".-") or "experiment"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key} = {value!r}: expected a table [{key}]")
    return value


def _check_keys(data: dict[str, Any], valid: tuple[str, ...] | list[str], where: str) -> None:
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ConfigError(f"[{where}] unknown key {unknown[0]!r}; valid: {', '.join(valid)}")


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value
