"""Devices and hosts: the mesh and its logical-axis rules (sharding.py), multi-host start-up (distributed.py), and
what happens to a host batch on its way into the jitted step (device_batch.py)."""
