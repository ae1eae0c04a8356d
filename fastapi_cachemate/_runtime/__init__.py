"""What requests share, per configuration: the per-request backend calls and decisions
(flow), the circuit breaker, single flights, lock leases, background refreshes."""
