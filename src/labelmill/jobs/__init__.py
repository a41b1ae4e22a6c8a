"""Background work: one job lifecycle (queued, claimed with a heartbeat, done or failed, stale
claims reaped), one registry of job kinds, and executors that run them (a local worker now; a Ray
executor comes with model assistance). Routes and commands only queue jobs."""
