"""The executor queue: jobs, fair scheduling, worker processes and the journal."""
