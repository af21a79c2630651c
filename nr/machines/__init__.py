"""Machines the tool makes or finds for a site, outside the engine core: the Docker lab, Multipass VMs
(``nr vms``) and the Multipass inventory plugin. They write or build inventories whose role groups,
generated secrets and settings come from the components' contracts (:mod:`nr.contract`)."""
