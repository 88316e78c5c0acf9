"""Workflows: Petri nets whose places run agents, reached only through the execution core (the
seed's bridge). ``net``: the net semantics in plain Python; the rest: the Django app."""
