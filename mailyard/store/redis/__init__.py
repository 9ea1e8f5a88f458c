"""Adapters over Redis: the state a cluster's nodes share that is not mail (counters)."""
