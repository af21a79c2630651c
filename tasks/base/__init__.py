"""The ``base`` component: host preparation every later component needs (see :mod:`tasks.base.play`)."""
