"""Push: the change bus (`bus`), what a connection sends when it starts (`state`), and the two
channels on it: EventSource (`eventsource`, RFC 8620 §7.3) and JMAP over WebSocket (`websocket`,
RFC 8887)."""
