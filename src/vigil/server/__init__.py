"""The asyncio daemon: listeners, per-connection protocol handling, scans, reloads."""
