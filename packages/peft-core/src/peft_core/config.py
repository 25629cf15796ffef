"""A small base class for method configs: a dataclass that round-trips through JSON.

Every method package subclasses :class:`MethodConfig`, sets ``method`` (its registry key) and adds
documented fields. Saved configs carry a version stamp (which library and version wrote them, and
the file format), and loading rejects keys the class does not know instead of silently dropping
them: a typo in a hand-edited config must not turn into a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from peft_core._atomic import atomic_write_text

CONFIG_FORMAT_VERSION = 1
"""The format configs are written in."""
NEWEST_FORMAT_VERSION = 2
"""The newest format this library reads. 2: what ``save_trainable`` writes since peft-core 0.2
(``adapter_config.json`` with a digest of the weights and the frozen parameters it keeps, which
0.1 would reject as unknown keys; it refuses the format by name instead). A config saved alone
(:meth:`MethodConfig.save`) stays format 1."""
# Keys written next to the fields; not constructor arguments.
_STAMP_KEYS = frozenset({"method", "library", "library_version", "format_version"})
# Keys save_trainable writes into a saved folder's adapter_config.json next to the config's fields:
# from_dict ignores them, unless the config class has a field of that name, so that a folder's
# record reads back as its config.
SAVED_FOLDER_KEYS = frozenset(
    {
        "peft_core_version",
        "saved_buffers",
        "saved_parameters",
        "frozen_parameters",
        "weights_sha256",
    }
)

ConfigT = TypeVar("ConfigT", bound="MethodConfig")


class ConfigError(ValueError):
    """A config could not be built from the given values."""


@dataclasses.dataclass
class MethodConfig:
    """Base of every method config. Subclasses are dataclasses and set ``method``.

    Override :meth:`validate` to check field values; it runs after construction and after loading.
    """

    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad field and what was expected."""

    # -- serialisation ---------------------------------------------------------------------
    @classmethod
    def library(cls) -> tuple[str, str]:
        """The top-level package that defines this config, and its version."""
        package = cls.__module__.split(".")[0]
        version = getattr(sys.modules.get(package), "__version__", "unknown")
        return package, version

    def to_dict(self) -> dict[str, Any]:
        library, version = self.library()
        stamp = {
            "method": self.method,
            "library": library,
            "library_version": version,
            "format_version": CONFIG_FORMAT_VERSION,
        }
        return {**stamp, **dataclasses.asdict(self)}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls: type[ConfigT], data: dict[str, Any]) -> ConfigT:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        saved_method = data.get("method")
        if saved_method is not None and cls.method and saved_method != cls.method:
            raise ConfigError(
                f"this config was saved for method {saved_method!r}, not {cls.method!r} ({cls.__name__})"
            )
        check_format_version(data, cls.__name__)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        values = {
            k: v
            for k, v in data.items()
            if k not in _STAMP_KEYS and (k not in SAVED_FOLDER_KEYS or k in fields)
        }
        unknown = sorted(set(values) - set(fields))
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(
                f"unknown key(s) for {cls.__name__}: {', '.join(hints)}. "
                f"Known keys: {', '.join(sorted(fields))}"
            )
        for name, value in values.items():
            # JSON has no tuples; restore them where the field's default is one.
            default = fields[name].default
            if isinstance(value, list) and isinstance(default, tuple):
                values[name] = tuple(value)
        return cls(**values)

    @classmethod
    def from_json_file(cls: type[ConfigT], path: str | os.PathLike) -> ConfigT:
        return cls.from_dict(read_config_dict(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically to ``path``."""
        return atomic_write_text(path, self.to_json_string())


def check_format_version(data: dict[str, Any], source: str) -> None:
    """Refuse a config written in a newer file format than this library understands."""
    format_version = data.get("format_version", CONFIG_FORMAT_VERSION)
    if not isinstance(format_version, int) or format_version > NEWEST_FORMAT_VERSION:
        raise ConfigError(
            f"{source}: format_version {format_version!r} is newer than this library reads "
            f"({NEWEST_FORMAT_VERSION}); upgrade the package that saved it"
        )


def read_config_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a saved config file, with a clear error for a missing or unreadable one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no config file at {path}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path} is not valid JSON ({error}); the file may be truncated"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data
