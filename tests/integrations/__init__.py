"""SQLAlchemy, factory_boy and Hypothesis under the plugin, on generated projects."""
