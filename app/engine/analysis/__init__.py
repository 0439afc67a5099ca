"""Static analysis of planned workflow documents and of finished runs: pure functions that take
plans (or recorded results) and return read models; the services feed them and serve the answers."""
