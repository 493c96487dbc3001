"""The kiosk config: one TOML file, typed and checked before anything starts.

``load_config(path)`` reads the file, merges the scale calibration from
``<state_dir>/calibration.toml`` over ``[scale]``, and returns a
``KioskConfig``.  Anything wrong raises ``ConfigError`` with a message that
names the key, e.g. ``doors[1].lock_pin: expected int, got str`` (list
indexes count from 0).  The sections are msgspec Structs with
``forbid_unknown_fields``; the options of a driver table are checked against
the driver constructor's signature and type hints, so an option the driver
does not take is an error here, not a surprise on the Pi.

``sim_config_from_demo()`` builds an all-fake config from the backend demo's
``var/demo-kiosk.json``.  Every key is documented in docs/kiosk-config.md.
"""

from __future__ import annotations

import inspect
import json
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from hardware import HardwareConfigError
from hardware.registry import driver_class
from kiosk import ConfigError
from protocol import ProtocolError
from protocol.labels import public_key_from_text

__all__ = ["ConfigError", "KioskConfig", "load_config", "config_from_dict", "sim_config_from_demo"]

CALIBRATION_FILE = "calibration.toml"
#: constructor parameters the kiosk supplies at run time; never set from the config
RUNTIME_PARAMS = frozenset({"clock"})

Positive = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
BcmPin = Annotated[int, Meta(ge=0, le=27)]


class _Section(Struct, forbid_unknown_fields=True, kw_only=True):
    """A config table: unknown keys are errors."""


class KioskSection(_Section):
    name: Annotated[str, Meta(min_length=1)]
    #: journal, calibration and cached backend config live here
    state_dir: Annotated[str, Meta(min_length=1)]


class BackendSection(_Section):
    url: Annotated[str, Meta(pattern=r"^https?://[^\s/]+")]
    kiosk_id: Annotated[str, Meta(min_length=1)]
    secret: Annotated[str, Meta(min_length=16)]
    community: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    label_public_key: str | None = None
    timeout_s: Positive = 10.0
    sync_interval_s: Positive = 30.0
    config_refresh_s: Positive = 300.0
    batch_size: Annotated[int, Meta(ge=1, le=500)] = 100
    retry_base_s: Positive = 1.0
    retry_max_s: Positive = 300.0


class JournalSection(_Section):
    #: default: <state_dir>/journal.sqlite3
    path: str | None = None
    outbox_limit: PositiveInt = 100_000
    outbox_warn_ratio: Annotated[float, Meta(gt=0, le=1)] = 0.5
    #: synced and empty deposits are pruned this many days after (kiosk.upkeep); never the rest
    keep_synced_days: PositiveInt = 30


class GpioSection(_Section):
    backend: Literal["rpi", "sim"] = "rpi"


class DriverSpec(_Section):
    """A driver table: ``driver`` names it, every other key is a constructor option."""

    driver: Annotated[str, Meta(min_length=1)]
    options: dict[str, Any] = {}


class DoorConfig(_Section):
    number: PositiveInt
    category: Annotated[str, Meta(min_length=1)]
    capacity_g: PositiveInt
    driver: Annotated[str, Meta(min_length=1)]
    #: name of a [scales.NAME] table; default: the [scale] table
    scale: str | None = None
    #: BCM pin of this bin's push button (see [buttons]); none: choose on the touch screen
    button_pin: BcmPin | None = None
    options: dict[str, Any] = {}


class WeighingSection(_Section):
    band_g: PositiveInt = 20
    window_s: Positive = 0.8
    min_deposit_g: PositiveInt = 30
    stable_timeout_s: Positive = 10.0


class ButtonsSection(_Section):
    """The push buttons: ``[[doors]] button_pin`` picks a bin, ``cancel_pin`` cancels."""

    #: a press counts once the input has read pressed this long (contact bounce is shorter)
    debounce_ms: Annotated[int, Meta(ge=1, le=1000)] = 30
    poll_ms: Annotated[int, Meta(ge=1, le=100)] = 10
    #: switch to GND with the internal pull-up (True), or to 3V3 with the pull-down
    active_low: bool = True
    cancel_pin: BcmPin | None = None


class UiSection(_Section):
    """The touch-screen page the kiosk serves (shown by Chromium in kiosk mode)."""

    enabled: bool = False
    #: keep it on the loopback: anyone who reaches the page can choose a bin
    host: Annotated[str, Meta(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8080


class TimeoutsSection(_Section):
    category_s: Positive = 20.0
    door_open_s: Positive = 30.0
    door_close_s: Positive = 60.0
    result_display_s: Positive = 5.0
    backend_answer_s: Positive = 2.0


class KioskConfig(_Section):
    """The whole, checked kiosk config."""

    kiosk: KioskSection
    backend: BackendSection
    scanner: DriverSpec
    doors: Annotated[list[DoorConfig], Meta(min_length=1)]
    scale: DriverSpec | None = None
    scales: dict[str, DriverSpec] = {}
    # factories, not shared instances: loading fills in paths and options
    gpio: GpioSection = msgspec.field(default_factory=GpioSection)
    journal: JournalSection = msgspec.field(default_factory=JournalSection)
    weighing: WeighingSection = msgspec.field(default_factory=WeighingSection)
    timeouts: TimeoutsSection = msgspec.field(default_factory=TimeoutsSection)
    buttons: ButtonsSection = msgspec.field(default_factory=ButtonsSection)
    ui: UiSection = msgspec.field(default_factory=UiSection)
    indicator: DriverSpec = msgspec.field(default_factory=lambda: DriverSpec(driver="none"))

    @property
    def state_path(self) -> Path:
        """Return the state directory as a Path."""
        return Path(self.kiosk.state_dir)

    @property
    def journal_path(self) -> Path:
        """Return the journal database path."""
        return Path(self.journal.path) if self.journal.path else self.state_path / "journal.sqlite3"

    @property
    def calibration_path(self) -> Path:
        """Return where ``kiosk calibrate`` writes the scale calibration."""
        return self.state_path / CALIBRATION_FILE

    def door(self, number: int) -> DoorConfig:
        """Return the door numbered ``number``; raise KeyError if none."""
        for door in self.doors:
            if door.number == number:
                return door
        raise KeyError(number)

    def scale_for(self, door: DoorConfig) -> DriverSpec:
        """Return the scale table that weighs ``door``."""
        return self.scales[door.scale] if door.scale else self.scale


# -- error messages ---------------------------------------------------------------

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _join(prefix: str, path: str) -> str:
    path = path.lstrip(".")
    if not prefix:
        return path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}" if path else prefix


def _describe(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """Turn msgspec's message into ``key.path: what is wrong``."""
    match = _AT.match(str(exc))
    message, path = match["msg"], match["path"] or ""
    if found := re.match(r"Object contains unknown field `(.+)`", message):
        return f"{_join(_join(prefix, path), found[1])}: unknown key"
    if found := re.match(r"Object missing required field `(.+)`", message):
        return f"{_join(_join(prefix, path), found[1])}: required key missing"
    message = re.sub(r"`([^`]*)`", r"\1", message)
    return f"{_join(prefix, path) or '(top level)'}: {message[:1].lower()}{message[1:]}"


# -- driver options -----------------------------------------------------------------

_TOML_SCALARS = (int, float, str, bool, type(None))


def _toml_typed(hint) -> bool:
    """Return True if a config value of type ``hint`` can be written in TOML."""
    if hint is Any or hint in _TOML_SCALARS:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return True
    if origin is Annotated:
        return _toml_typed(args[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        return all(_toml_typed(a) for a in args if a is not Ellipsis)
    if origin is dict:
        return args[:1] == (str,) and _toml_typed(args[1])
    return False


def driver_option_types(cls: type) -> dict[str, tuple[Any, Any]]:
    """Return ``{option: (type, default)}`` for the config options of a driver class.

    Options are the constructor's keyword parameters, except the ones the
    kiosk injects at run time (``RUNTIME_PARAMS``) and ones whose type cannot
    be written in TOML (objects such as a GPIO module passed in tests).
    """
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception:  # an annotation that does not resolve: check names only
        hints = {}
    options: dict[str, tuple[Any, Any]] = {}
    for name, param in list(signature.parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in RUNTIME_PARAMS:
            continue
        if name.startswith("_"):
            continue
        hint = hints.get(name, Any)
        if not _toml_typed(hint):
            continue
        default = msgspec.NODEFAULT if param.default is param.empty else param.default
        options[name] = (hint, default)
    return options


def check_driver_options(
    kind: str, name: str, options: dict, where: str, gpio_backend: str | None = None
) -> dict:
    """Check ``options`` against driver ``name``'s constructor; return them converted.

    A driver that takes a ``gpio`` option gets ``[gpio] backend`` unless its
    table names one itself.
    """
    try:
        cls = driver_class(kind, name)
    except HardwareConfigError as exc:
        raise ConfigError(f"{where}.driver: {exc}") from None
    spec = driver_option_types(cls)
    if gpio_backend is not None and "gpio" in spec and "gpio" not in options:
        options = {**options, "gpio": gpio_backend}
    fields = [
        (key, hint, default) if default is not msgspec.NODEFAULT else (key, hint)
        for key, (hint, default) in spec.items()
    ]
    struct = msgspec.defstruct(
        f"{cls.__name__}Options", fields, forbid_unknown_fields=True, kw_only=True
    )
    try:
        converted = msgspec.convert(options, struct)
    except msgspec.ValidationError as exc:
        text = _describe(exc, where)
        if text.endswith("unknown key"):
            known = ", ".join(sorted(spec)) or "none"
            text += f" for {kind} driver {name!r} (options: {known})"
        raise ConfigError(text) from None
    return {key: getattr(converted, key) for key in options}


# -- loading ------------------------------------------------------------------------

_DOOR_KEYS = {"number", "category", "capacity_g", "driver", "scale", "button_pin"}


def _split_driver(table, where: str, known: set[str]) -> Any:
    """Move a driver table's option keys under ``options`` (checked separately)."""
    if not isinstance(table, dict):
        return table
    if "options" in table:
        raise ConfigError(f"{where}.options: write driver options directly in the table")
    base = {k: v for k, v in table.items() if k in known}
    base["options"] = {k: v for k, v in table.items() if k not in known}
    return base


def _prepare(raw: dict) -> dict:
    raw = dict(raw)
    for key in ("scanner", "scale", "indicator"):
        if key in raw:
            raw[key] = _split_driver(raw[key], key, {"driver"})
    if isinstance(raw.get("scales"), dict):
        raw["scales"] = {
            n: _split_driver(t, f"scales.{n}", {"driver"}) for n, t in raw["scales"].items()
        }
    if isinstance(raw.get("doors"), list):
        raw["doors"] = [
            _split_driver(t, f"doors[{i}]", _DOOR_KEYS) for i, t in enumerate(raw["doors"])
        ]
    return raw


def _check_drivers(config: KioskConfig) -> None:
    tables: list[tuple[str, str, DriverSpec | DoorConfig]] = [
        ("scanner", "scanner", config.scanner),
        ("indicator", "indicator", config.indicator),
    ]
    if config.scale is not None:
        tables.append(("scale", "scale", config.scale))
    tables += [("scale", f"scales.{n}", s) for n, s in config.scales.items()]
    tables += [("door", f"doors[{i}]", d) for i, d in enumerate(config.doors)]
    for kind, where, spec in tables:
        spec.options = check_driver_options(
            kind, spec.driver, spec.options, where, config.gpio.backend
        )


def _check_meaning(config: KioskConfig) -> None:
    """Check what types cannot say: unique doors, known scales, a readable key."""
    seen: set[int] = set()
    for i, door in enumerate(config.doors):
        if door.number in seen:
            raise ConfigError(f"doors[{i}].number: door {door.number} is configured twice")
        seen.add(door.number)
        if door.scale is not None and door.scale not in config.scales:
            known = ", ".join(sorted(config.scales)) or "none"
            raise ConfigError(f"doors[{i}].scale: no [scales.{door.scale}] table (have: {known})")
        if door.scale is None and config.scale is None:
            raise ConfigError(f"doors[{i}].scale: no [scale] table and no scale named")
    if config.backend.label_public_key is not None:
        try:
            public_key_from_text(config.backend.label_public_key)
        except ProtocolError as exc:
            raise ConfigError(f"backend.label_public_key: {exc}") from None
    if config.timeouts.backend_answer_s > config.backend.timeout_s:
        raise ConfigError("timeouts.backend_answer_s: longer than backend.timeout_s")
    if config.backend.retry_base_s > config.backend.retry_max_s:
        raise ConfigError("backend.retry_base_s: larger than backend.retry_max_s")


def _check_button_pins(config: KioskConfig) -> None:
    """Refuse a button on a pin another button or a driver table already uses."""
    used: dict[int, str] = {}
    tables = [("scale", config.scale), ("indicator", config.indicator)]
    tables += [(f"scales.{n}", s) for n, s in config.scales.items()]
    tables += [(f"doors[{i}]", d) for i, d in enumerate(config.doors)]
    for where, spec in tables:
        for key, value in (spec.options if spec is not None else {}).items():
            if key.endswith("_pin") and isinstance(value, int):
                used.setdefault(value, f"{where}.{key}")
    buttons = [(f"doors[{i}].button_pin", d.button_pin) for i, d in enumerate(config.doors)]
    buttons.append(("buttons.cancel_pin", config.buttons.cancel_pin))
    for where, pin in buttons:
        if pin is None:
            continue
        if pin in used:
            raise ConfigError(f"{where}: GPIO {pin} is already {used[pin]}")
        used[pin] = where


def _merge_calibration(raw: dict, base_dir: Path) -> None:
    """Merge ``<state_dir>/calibration.toml`` [scale] keys over the raw [scale] table."""
    state_dir = (
        raw.get("kiosk", {}).get("state_dir") if isinstance(raw.get("kiosk"), dict) else None
    )
    if not isinstance(state_dir, str) or not isinstance(raw.get("scale"), dict):
        return
    path = _resolve(state_dir, base_dir) / CALIBRATION_FILE
    if not path.exists():
        return
    try:
        calibration = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    table = calibration.get("scale")
    if set(calibration) != {"scale"} or not isinstance(table, dict):
        raise ConfigError(f"{path}: must hold exactly one [scale] table")
    raw["scale"] = {**raw["scale"], **table}


def _resolve(path: str, base_dir: Path) -> Path:
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else (base_dir / resolved).resolve()


def config_from_dict(raw: dict, base_dir: str | Path = ".") -> KioskConfig:
    """Check a config given as the dict TOML decodes to; relative paths are from ``base_dir``."""
    base_dir = Path(base_dir)
    try:
        config = msgspec.convert(_prepare(raw), KioskConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    config.kiosk.state_dir = str(_resolve(config.kiosk.state_dir, base_dir))
    if config.journal.path:
        config.journal.path = str(_resolve(config.journal.path, base_dir))
    _check_meaning(config)
    _check_drivers(config)
    _check_button_pins(config)
    return config


def load_config(path: str | Path) -> KioskConfig:
    """Read and check the kiosk config at ``path``; raise ConfigError naming any bad key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read kiosk config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base_dir = path.resolve().parent
    _merge_calibration(raw, base_dir)
    try:
        return config_from_dict(raw, base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def sim_config_from_demo(demo_json_path: str | Path, state_dir: str | Path) -> KioskConfig:
    """Build an all-fake config from the backend demo's ``var/demo-kiosk.json``."""
    path = Path(demo_json_path)
    try:
        demo = json.loads(path.read_text(encoding="utf-8"))
        raw = {
            "kiosk": {"name": f"sim-{demo['kiosk_id']}", "state_dir": str(state_dir)},
            "backend": {
                "url": demo["backend_url"],
                "kiosk_id": demo["kiosk_id"],
                "secret": demo["secret"],
                "community": demo["community"],
                "label_public_key": demo.get("label_public_key"),
            },
            "gpio": {"backend": "sim"},
            "scanner": {"driver": "fake"},
            "scale": {"driver": "fake"},
            "indicator": {"driver": "fake"},
            "doors": [
                {
                    "number": d["door"],
                    "category": d["category"],
                    "capacity_g": d.get("capacity_g", 50_000),
                    "driver": "fake",
                }
                for d in demo["doors"]
            ],
        }
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read demo kiosk file {path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: demo kiosk file lacks {exc}") from None
    try:
        return config_from_dict(raw, Path.cwd())
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def build_driver(kind: str, spec: DriverSpec | DoorConfig, **runtime):
    """Construct the driver a checked table names; pass ``runtime`` kwargs it accepts."""
    cls = driver_class(kind, spec.driver)
    params = inspect.signature(cls.__init__).parameters
    accepts_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in runtime.items() if accepts_all or k in params}
    return cls(**spec.options, **extra)
