"""Configuration: the frozen pydantic models (`models`), loading and cross-checks (`loader`),
driver specs derived from it (`specs`), what a reload changes (`reload`), a TOML writer (`tomlw`).

The models are re-exported here: `from gateway.config import GatewayConfig`.
"""

from gateway.config.models import *  # noqa: F403 - the models are this package's public names
