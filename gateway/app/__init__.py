"""The application: the CLI, the daemon that wires sources, the engine loop and sinks under one
supervisor, start checks, the demo, logs and sd_notify, and the views the status page reads.
"""
