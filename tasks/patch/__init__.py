"""The ``patch`` component: OS updates and reboots, one host at a time, with the site in service."""
