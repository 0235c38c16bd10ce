"""The ``ekd_student`` upstream in s3prl's layout: ``hubconf`` entries and the ``expert``."""
