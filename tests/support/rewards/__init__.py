"""Cases the reward's tests and benchmarks share: answer pairs and hostile programs."""
