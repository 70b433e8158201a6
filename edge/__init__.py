"""Edge side of lobbywatch: detector, zones, tracker, pipeline and the MQTT agent."""
