"""One sub-package per study; each declares its stages in ``config.py`` (see gradlab.stages)."""
