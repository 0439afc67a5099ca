"""Analysis of workflow documents and of runs: pure functions that take plans (and a run's
recorded events) and return read models; the services feed them and serve the answers."""
