"""Event collection: the Segment-compatible tracking API, sources and the event store."""
