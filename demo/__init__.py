"""Demo tooling beside the collector: demo, simulator, private broker, terminal view."""
