"""The shell's core: the clock, the inbox, the fan-out to sinks, the output bank, the inputs that
turn outside data into engine events (permits, faces, BLE), vibration analysis, trends, and
the state file. Depends on gateway.config, rules and drivers only.
"""
