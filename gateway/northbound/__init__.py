"""What the gateway tells the central systems: MQTT (JSON), Sparkplug B, the time-series store."""
