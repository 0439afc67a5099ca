"""Running a Plan: the scheduler, graph loops, node attempts, the run log, the executor surface."""
