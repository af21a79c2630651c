"""Stand-ins for what cannot run in tests: executables (``k3s``, ``multipass``) and the scripted
:class:`~nr.transport.Remote` (:mod:`tests.fakes.remote`)."""
