"""The local status page and API (aiohttp, offline, English and Chinese), logins and roles.

The server sees a narrow view of the gateway (`gateway.status.view.GatewayView`), never the daemon.
"""
