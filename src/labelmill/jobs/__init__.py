"""Background work: the local worker that runs queued jobs (Ray executor: next milestone)."""
