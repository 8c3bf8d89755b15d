"""The domain: values and rules with no Flask and no I/O."""
