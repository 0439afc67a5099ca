"""Analysis of workflow documents and runs: pure functions over plans and recorded runs."""
