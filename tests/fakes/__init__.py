"""Named fakes for hardware this machine does not have. Nothing else in the tests is fake."""
