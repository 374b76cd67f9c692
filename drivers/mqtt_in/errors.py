"""Errors of the MQTT input driver.

Only configuration mistakes raise (once, at construction). Bad payloads never raise:
they become `Rejection` values in the codec and `Rejected` events in the source.
Broker trouble never escapes `MqttInput.run()`: it reconnects with backoff.
"""

from __future__ import annotations


class MqttInputError(Exception):
    """Base class of the errors this driver raises."""


class MqttConfigError(MqttInputError, ValueError):
    """A configuration value the driver cannot work with.

    `place` names the setting (e.g. "mqtt_in.mappings[3].topic"), `problem` says what is
    wrong and how to fix it.
    """

    def __init__(self, place: str, problem: str) -> None:
        self.place = place
        """Where in the configuration the mistake is."""
        self.problem = problem
        """What is wrong, and the fix."""
        super().__init__(f"{place}: {problem}")
