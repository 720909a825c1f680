"""The pytest plugin, run as users run it: a real pytest on generated projects."""
