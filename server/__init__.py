"""Central side of lobbywatch: collector, wait estimation, alerts, storage and API."""
