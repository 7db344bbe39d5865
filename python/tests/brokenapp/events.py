import telegraphy_no_such_module_for_tests  # noqa: F401  (the import error must surface)
